"""The consistent-hash ring: planning (builder) and lookup (ring)."""
