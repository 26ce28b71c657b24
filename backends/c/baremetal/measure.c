/*
 * Measurement hooks for one inference on qemu-system-arm -M mps2-an386, called by the
 * wrapper in measure_wrap.S around the model's entry point (linked with
 * -Wl,--wrap=ENTRY, so the test driver's call goes through the wrapper unchanged).
 *
 * Invariants:
 * - Instructions are counted, not cycles: QEMU models no DWT cycle counter on this
 *   board (DWT_CYCCNT reads 0), so the count comes from SysTick running on the CPU
 *   clock while qemu runs with -icount, where virtual time advances by a fixed amount
 *   per executed instruction. The ticks-per-instruction ratio is measured here, on a
 *   loop of known length, rather than assumed from the board's clock or the -icount
 *   shift, so the printed instruction count does not depend on either.
 * - The count covers the entry point and the wrapper's few instructions around it:
 *   the cost of reading the counter (an empty measured region, also printed) is
 *   subtracted from both the calibration and the measurement. It is the same on
 *   every run, and survives SysTick wrap-arounds (the SysTick handler counts them).
 * - Stack use is the high-water mark below the caller's stack pointer: the region
 *   below it is painted before the call and scanned after it. It is exact for the
 *   path this input takes, which for straight-line model code is every path.
 * - Output is one line, `qc-measure: key=value ...`, after the model's own output.
 */
#include <stdint.h>
#include <stdio.h>

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define ICSR_PENDSTSET (1u << 26)
#define RELOAD 0x00FFFFFFu

/* How far below the caller's stack pointer the paint reaches (the linker script
 * reserves _min_stack = 64 KiB for the stack); a model using more shows as
 * `stack_bytes=>=...`. */
#define PAINT_BYTES (60u * 1024u)
#define PAINT_WORD 0xC5AC5AC5u

/* r0-r3 and lr of the wrapped call, kept by measure_wrap.S across the hooks. */
uint32_t qc_measure_saved[5];

static volatile uint32_t wraps;
static uint32_t *paint_lo, *caller_sp;
static uint64_t start_ticks;

void SysTick_Handler(void)
{
    wraps++;
}

/* Ticks since SysTick was started. A wrap that happened but whose interrupt is still
 * pending is counted, so the value never steps back by a whole period. */
static uint64_t ticks_now(void)
{
    __asm volatile("cpsid i" ::: "memory");
    uint32_t w = wraps;
    uint32_t cvr = SYST_CVR;
    if (SCB_ICSR & ICSR_PENDSTSET) {
        cvr = SYST_CVR;
        w++;
    }
    __asm volatile("cpsie i" ::: "memory");
    return (uint64_t)w * (RELOAD + 1u) + (RELOAD - cvr);
}

static void ticks_start(void)
{
    SYST_CSR = 0;
    SYST_RVR = RELOAD;
    SYST_CVR = 0; /* any write clears it; the next tick reloads RELOAD */
    wraps = 0;
    SYST_CSR = 7; /* enable, interrupt on wrap, CPU clock */
    /* Skip the first, reloading tick so that counts start from a full period. */
    while (SYST_CVR == 0) {
    }
}

/* Ticks for `n` iterations of a two-instruction loop (2 n instructions). */
static uint64_t calibrate(uint32_t n)
{
    uint64_t t0 = ticks_now();
    __asm volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
    return ticks_now() - t0;
}

static uint64_t empty_region_ticks;
static uint64_t calib_ticks;
#define CALIB_ITERS 1000000u

void qc_measure_begin(uint32_t *sp)
{
    uint32_t *p;
    uint32_t *here;

    __asm volatile("mov %0, sp" : "=r"(here));

    ticks_start();
    {
        uint64_t t0 = ticks_now();
        empty_region_ticks = ticks_now() - t0;
    }
    calib_ticks = calibrate(CALIB_ITERS) - empty_region_ticks;

    caller_sp = sp;
    paint_lo = (uint32_t *)((uintptr_t)sp - PAINT_BYTES);
    /* Below this function's own frame only: the frame is live while painting. */
    for (p = paint_lo; p < here - 16; p++) {
        *p = PAINT_WORD;
    }
    start_ticks = ticks_now();
}

void qc_measure_end(void)
{
    uint64_t ticks = ticks_now() - start_ticks - empty_region_ticks;
    uint32_t *p = paint_lo;
    uint32_t stack;
    /* Instructions per tick = 2 CALIB_ITERS / calib_ticks, in integer arithmetic so
     * that this file links no float routines either. */
    uint64_t insns = calib_ticks ? (ticks * 2u * CALIB_ITERS + calib_ticks / 2) / calib_ticks : 0;
    uint64_t overhead =
        calib_ticks ? (empty_region_ticks * 2u * CALIB_ITERS + calib_ticks / 2) / calib_ticks : 0;

    while (p < caller_sp && *p == PAINT_WORD) {
        p++;
    }
    stack = (uint32_t)((uintptr_t)caller_sp - (uintptr_t)p);
    printf("qc-measure: instructions=%llu ticks=%llu calib_ticks=%llu calib_instructions=%lu "
           "overhead_instructions=%llu stack_bytes=%s%lu\n",
           (unsigned long long)insns, (unsigned long long)ticks,
           (unsigned long long)calib_ticks, (unsigned long)(2u * CALIB_ITERS),
           (unsigned long long)overhead, p == paint_lo ? ">=" : "", (unsigned long)stack);
}
