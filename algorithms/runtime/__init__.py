"""What every algorithm shares: job layout, flags, schedules, optimizers, the loop, export."""
