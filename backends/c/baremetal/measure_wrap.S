/*
 * __wrap_<QC_ENTRY>: calls qc_measure_begin, the real <QC_ENTRY>, qc_measure_end,
 * and returns the entry's result. Build with -DQC_ENTRY=<name> and link with
 * -Wl,--wrap=<name>.
 *
 * Invariants: the stack pointer is the caller's at the call of the real entry, so
 * arguments passed on the stack (entries with more than four pointer arguments) stay
 * where the entry expects them; r0-r3 and lr are kept in qc_measure_saved (measure.c)
 * rather than on the stack for the same reason. Not reentrant, which a single-threaded
 * test driver never needs.
 */
#ifndef QC_ENTRY
#error "define QC_ENTRY to the wrapped function's name"
#endif
#define QC_CAT_(a, b) a##b
#define QC_CAT(a, b) QC_CAT_(a, b)
#define WRAP QC_CAT(__wrap_, QC_ENTRY)
#define REAL QC_CAT(__real_, QC_ENTRY)

    .syntax unified
    .thumb
    .text
    .global WRAP
    .type WRAP, %function
    .thumb_func
WRAP:
    ldr     r12, =qc_measure_saved
    stm     r12, {r0-r3, lr}
    mov     r0, sp
    bl      qc_measure_begin
    ldr     r12, =qc_measure_saved
    ldm     r12, {r0-r3}
    bl      REAL
    ldr     r12, =qc_measure_saved
    str     r0, [r12]
    bl      qc_measure_end
    ldr     r12, =qc_measure_saved
    ldr     r0, [r12]
    ldr     lr, [r12, #16]
    bx      lr
    .size WRAP, . - WRAP
    .pool
