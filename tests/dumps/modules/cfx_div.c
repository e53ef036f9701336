// SPDX-License-Identifier: GPL-2.0
/* divide: cfx_ratio() divides by a count that is zero. */
#include "cfx.h"
#include <linux/module.h>

static volatile unsigned int cfx_total = 4096, cfx_count;  /* volatile: a divisor only known at run time */

noinline unsigned int cfx_ratio(unsigned int total, unsigned int count)
{
	return total / count;  /* count == 0: divide error */
}

static int __init cfx_div_init(void)
{
	return cfx_ratio(cfx_total, cfx_count) ? 0 : -EDOM;
}
module_init(cfx_div_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("crashfleet test fixture: divide error");
