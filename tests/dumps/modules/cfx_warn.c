// SPDX-License-Identifier: GPL-2.0
/* warn: cfx_validate() warns about a descriptor it cannot validate (panic_on_warn=1). */
#include "cfx.h"
#include <linux/module.h>

static volatile unsigned int cfx_desc_len = 3;  /* volatile: checked at run time */

noinline int cfx_validate(unsigned int len)
{
	if (len % 4) {
		WARN_ON(1);  /* WARNING: CPU: N PID: N at cfx_warn.c:N cfx_validate+... */
		return -EINVAL;
	}
	return 0;
}

static int __init cfx_warn_init(void)
{
	return cfx_validate(cfx_desc_len);
}
module_init(cfx_warn_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("crashfleet test fixture: WARN_ON");
