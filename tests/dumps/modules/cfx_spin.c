// SPDX-License-Identifier: GPL-2.0
/* softlockup_a: cfx_spin_wait() waits for a flag nobody sets, with preemption off. */
#include "cfx.h"
#include <linux/module.h>
#include <linux/preempt.h>

static int cfx_spin_done;

noinline int cfx_spin_wait(void)
{
	unsigned long spins = 0;

	preempt_disable();  /* the watchdog's thread never runs on this CPU again: soft lockup */
	while (!READ_ONCE(cfx_spin_done)) {
		cpu_relax();
		spins++;
	}
	preempt_enable();
	return spins > 0;
}

static int __init cfx_spin_init(void)
{
	return cfx_spin_wait() ? 0 : -EIO;
}
module_init(cfx_spin_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("crashfleet test fixture: soft lockup (spin)");
