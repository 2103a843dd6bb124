"""The side-by-side benchmark (scripts/bench)."""
