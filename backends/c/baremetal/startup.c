/*
 * Startup for qemu-system-arm -M mps2-an386 (Cortex-M4) with newlib's semihosting
 * library (link with --specs=rdimon.specs -nostartfiles and mps2_an386.ld).
 *
 * Invariants:
 * - The vector table is the first thing in flash (section .isr_vector, kept by the
 *   linker script at 0x00000000): word 0 is the initial stack pointer (top of RAM),
 *   word 1 the reset handler. The core reads both at reset; nothing else runs first.
 * - Before main() runs, .data holds its initial values (copied from their load
 *   address in flash), .bss is zero, and the semihosting file handles newlib's stdio
 *   needs are open. main()'s return value becomes the semihosting exit status.
 * - Every handler but reset is weak, so a harness may replace one (e.g. SysTick) by
 *   defining a function of the same name. A default handler spins: under qemu a fault
 *   then shows up as the harness's timeout rather than as wrong output.
 * - Nothing here uses floating point; when the build does use the FPU (a hard- or
 *   softfp-ABI build) the reset handler enables it before touching any data.
 */
#include <stdint.h>
#include <stdlib.h>

extern int main(void);
extern void initialise_monitor_handles(void);

/* Symbols of mps2_an386.ld. */
extern uint32_t _estack;
extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss;

void Reset_Handler(void);
void Default_Handler(void);

#define WEAK_DEFAULT __attribute__((weak, alias("Default_Handler")))
void NMI_Handler(void) WEAK_DEFAULT;
void HardFault_Handler(void) WEAK_DEFAULT;
void MemManage_Handler(void) WEAK_DEFAULT;
void BusFault_Handler(void) WEAK_DEFAULT;
void UsageFault_Handler(void) WEAK_DEFAULT;
void SVC_Handler(void) WEAK_DEFAULT;
void DebugMon_Handler(void) WEAK_DEFAULT;
void PendSV_Handler(void) WEAK_DEFAULT;
void SysTick_Handler(void) WEAK_DEFAULT;

/* A vector-table word: the initial stack pointer (a data address) or a handler.
 * The union keeps both in one ISO C table without casting between object and
 * function pointers. */
typedef union {
    uint32_t *sp;
    void (*handler)(void);
} vector_t;

/* 16 core exceptions plus the 32 external interrupts QEMU gives mps2-an386. */
__attribute__((section(".isr_vector"), used))
const vector_t vector_table[16 + 32] = {
    {.sp = &_estack},
    {.handler = Reset_Handler},
    {.handler = NMI_Handler},
    {.handler = HardFault_Handler},
    {.handler = MemManage_Handler},
    {.handler = BusFault_Handler},
    {.handler = UsageFault_Handler},
    {0}, {0}, {0}, {0},
    {.handler = SVC_Handler},
    {.handler = DebugMon_Handler},
    {0},
    {.handler = PendSV_Handler},
    {.handler = SysTick_Handler},
    /* External interrupts 0..31: nothing here enables them. */
    {.handler = Default_Handler}, {.handler = Default_Handler}, {.handler = Default_Handler}, {.handler = Default_Handler},
    {.handler = Default_Handler}, {.handler = Default_Handler}, {.handler = Default_Handler}, {.handler = Default_Handler},
    {.handler = Default_Handler}, {.handler = Default_Handler}, {.handler = Default_Handler}, {.handler = Default_Handler},
    {.handler = Default_Handler}, {.handler = Default_Handler}, {.handler = Default_Handler}, {.handler = Default_Handler},
    {.handler = Default_Handler}, {.handler = Default_Handler}, {.handler = Default_Handler}, {.handler = Default_Handler},
    {.handler = Default_Handler}, {.handler = Default_Handler}, {.handler = Default_Handler}, {.handler = Default_Handler},
    {.handler = Default_Handler}, {.handler = Default_Handler}, {.handler = Default_Handler}, {.handler = Default_Handler},
    {.handler = Default_Handler}, {.handler = Default_Handler}, {.handler = Default_Handler}, {.handler = Default_Handler},
};

void Reset_Handler(void)
{
#if defined(__ARM_FP)
    /* CPACR: full access to CP10/CP11, or the first FPU instruction faults. */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif
    /* Volatile pointers so that gcc does not turn these loops into memcpy/memset
     * calls whose code might assume initialised data. */
    volatile uint32_t *src = &_sidata;
    volatile uint32_t *dst = &_sdata;
    while (dst < &_edata) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0;
    }
    initialise_monitor_handles();
    exit(main());
}

void Default_Handler(void)
{
    for (;;) {
    }
}

/* newlib's exit path references these; with -nostartfiles nothing else defines them
 * and there are no constructors or destructors to run. */
void _init(void) {}
void _fini(void) {}
