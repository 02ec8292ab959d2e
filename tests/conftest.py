"""Shared test settings."""

import torch

# Tests use tiny models on a shared 2-core machine: one intra-op thread avoids
# oversubscription (two spinning OpenMP threads were 4× slower under load here).
torch.set_num_threads(1)
