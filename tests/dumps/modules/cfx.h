/* SPDX-License-Identifier: GPL-2.0 */
#ifndef CFX_H
#define CFX_H
/*
 * Included first by every cfx_* module, so that cfx_hash() comes first in the module's .text
 * and the culprit starts past its first bytes. An oops prints the 42 bytes before RIP on its
 * "Code:" line, and the page before a module's text is not mapped: a culprit at the very start
 * would give "Code: Unable to access opcode bytes" instead of the bytes most oopses show.
 */
#include <linux/types.h>

u32 cfx_hash(const u8 *buf, size_t len);

noinline u32 cfx_hash(const u8 *buf, size_t len)
{
	u32 hash = 5381;
	size_t i;

	for (i = 0; i < len; i++)
		hash = hash * 33 ^ buf[i];
	return hash;
}
#endif
