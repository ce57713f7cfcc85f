"""Training: runner (recipe -> run directory with manifest), loop (the optimizer steps), batching
(schedule and micro-batches), checkpoint (resume), distributed (several processes), speed,
qualify (the 7B architecture measured on this GPU)."""
