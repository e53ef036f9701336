// SPDX-License-Identifier: GPL-2.0
/* hung_task: cfx_wait_reply() waits, uninterruptibly, for a reply that never completes. */
#include "cfx.h"
#include <linux/module.h>
#include <linux/completion.h>

static DECLARE_COMPLETION(cfx_reply);
static int cfx_reply_status;

noinline int cfx_wait_reply(void)
{
	wait_for_completion(&cfx_reply);  /* D state forever: INFO: task insmod:N blocked */
	/* work after the wait keeps this frame on the stack (no tail call into the scheduler) */
	return READ_ONCE(cfx_reply_status);
}

static int __init cfx_hang_init(void)
{
	return cfx_wait_reply();
}
module_init(cfx_hang_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("crashfleet test fixture: hung task");
