#pragma once
// The target architecture of this translation unit, for the few places that differ: which ISA
// translation units exist (setup.py compiles csrc/cpu/isa/*_avx*.cpp only for x86-64 and *_neon.cpp
// only for aarch64) and how the CPU is asked what it supports (cpu/cpu_isa.cpp).
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define FASTPERC_X86 1
#elif defined(__aarch64__)
#define FASTPERC_ARM64 1
#endif
