"""Bottleneck-informed growth (TINY, Verbockhaven et al. 2024)."""
