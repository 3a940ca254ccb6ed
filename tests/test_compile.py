"""The ops under torch.compile(fullgraph=True): no graph break, same values and gradients as eager."""
import torch

import fastperc


def test_compiled_style_loss_forward_and_backward_inductor():
    torch._dynamo.reset()
    a = fastperc.gram_matrix(torch.randn(1, 16, 8, 8))

    def step(x):
        g = fastperc.gram_matrix(x, normalize="hw")
        return fastperc.style_loss(x, a) + 1e-3 * g.mean()

    compiled = torch.compile(step, fullgraph=True)
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    out = compiled(x)
    out.backward()
    ref = step(x2)
    ref.backward()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-9)


def test_compiled_module_dynamic_shapes():
    torch._dynamo.reset()
    module = fastperc.StyleLoss([torch.randn(1, 8, 6, 6), torch.randn(1, 12, 3, 3)], weights=[1.0, 0.1])
    compiled = torch.compile(module, fullgraph=True, dynamic=True, backend="aot_eager")
    for size in (6, 10):
        feats = [torch.randn(3, 8, size, size, requires_grad=True), torch.randn(3, 12, size // 2, size // 2)]
        out = compiled(feats)
        out.backward()
        torch.testing.assert_close(out, module(feats), rtol=1e-6, atol=0)
        assert torch.isfinite(feats[0].grad).all()
