"""Header-only pcap summariser: what a network engineer pulls out of a capture, in a few KB.

Stdlib only (struct-based decoding of link, IP and transport headers plus the few
payload bytes DNS, HTTP and TLS need); one pass, memory bounded by conversations.
"""
