// SPDX-License-Identifier: GPL-2.0
/* bug_on: cfx_check_state() finds a state it asserts can never happen. */
#include "cfx.h"
#include <linux/module.h>

enum cfx_state { CFX_IDLE, CFX_READY, CFX_BROKEN };

static volatile int cfx_state = CFX_BROKEN;  /* volatile: the BUG_ON is decided at run time */

noinline int cfx_check_state(int state)
{
	BUG_ON(state != CFX_IDLE && state != CFX_READY);  /* kernel BUG at cfx_bug.c:N */
	return state;
}

static int __init cfx_bug_init(void)
{
	return cfx_check_state(cfx_state) == CFX_READY ? 0 : -EAGAIN;
}
module_init(cfx_bug_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("crashfleet test fixture: BUG_ON");
