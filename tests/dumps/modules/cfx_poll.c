// SPDX-License-Identifier: GPL-2.0
/* softlockup_b: cfx_poll_hw() polls a status bit that never comes up, with preemption off. */
#include "cfx.h"
#include <linux/module.h>
#include <linux/preempt.h>

static int cfx_poll_ready;

noinline int cfx_poll_hw(void)
{
	unsigned long spins = 0;

	preempt_disable();  /* the watchdog's thread never runs on this CPU again: soft lockup */
	while (!READ_ONCE(cfx_poll_ready)) {
		cpu_relax();
		spins++;
	}
	preempt_enable();
	return spins > 0;
}

static int __init cfx_poll_init(void)
{
	return cfx_poll_hw() ? 0 : -EIO;
}
module_init(cfx_poll_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("crashfleet test fixture: soft lockup (poll)");
