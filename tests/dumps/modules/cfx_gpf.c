// SPDX-License-Identifier: GPL-2.0
/* gpf: cfx_walk_list() walks a list whose entry was already deleted (LIST_POISON1). */
#include "cfx.h"
#include <linux/module.h>
#include <linux/list.h>

/* volatile: the compiler cannot fold the poisoned pointer into the load */
static struct list_head *volatile cfx_stale = (struct list_head *)0xdead000000000100UL;

noinline int cfx_walk_list(struct list_head *head)
{
	struct list_head *pos;
	int n = 0;

	/* the first ->next loads from a non-canonical address: general protection fault */
	for (pos = head->next; pos != head; pos = pos->next)
		n++;
	return n;
}

static int __init cfx_gpf_init(void)
{
	return cfx_walk_list(cfx_stale) < 0 ? -EIO : 0;
}
module_init(cfx_gpf_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("crashfleet test fixture: general protection fault");
