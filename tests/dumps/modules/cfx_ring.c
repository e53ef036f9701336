// SPDX-License-Identifier: GPL-2.0
/* null_deref: cfx_flush_ring() follows a ring that was never allocated. */
#include "cfx.h"
#include <linux/module.h>

struct cfx_ring {
	unsigned long flags;
	unsigned int head;
	unsigned int tail;
};

/* volatile: the compiler cannot see that the ring is NULL, so the load is really made */
static struct cfx_ring *volatile cfx_rings[1];

noinline int cfx_flush_ring(struct cfx_ring *ring)
{
	int flushed = ring->tail - ring->head;  /* NULL + 8: BUG: kernel NULL pointer dereference */

	ring->head = ring->tail;
	return flushed;
}

static int __init cfx_ring_init(void)
{
	return cfx_flush_ring(cfx_rings[0]) < 0 ? -EIO : 0;
}
module_init(cfx_ring_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("crashfleet test fixture: NULL pointer dereference");
