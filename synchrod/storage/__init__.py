"""Space management on the target (SPEC §9): each filesystem's storage level
with hysteresis, what the levels do to placement and to copies in flight,
and the threshold events."""
