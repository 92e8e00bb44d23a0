"""A plain torch.nn.RNN on Go/NoGo, initialized from the EM wiring and kept on it with Dale's
signs: the drop-in form of `cxp train --variants 'WcD*C'`.

Usage: python docs/examples/connectome_rnn.py [PRIOR [SEED]]   (default: study_5_6_8, seed 0)
"""

import sys

import torch
from torch.nn.utils import parametrize

from connectome_priors import load
from connectome_priors.training.components import (ConnectomeConstraint,
                                                   WiringDistanceCommunicability, connectome_init_)
from connectome_priors.training.tasks import make_task

name = sys.argv[1] if len(sys.argv) > 1 else "study_5_6_8"
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
torch.manual_seed(seed)                            # nn.RNN / nn.Linear draw from the global RNG
prior = load(name)                                 # unit i of the model = row i of prior.neurons
n = len(prior)
rnn = torch.nn.RNN(3, n, nonlinearity="relu", batch_first=True)
readout = torch.nn.Linear(n, 2)
connectome_init_(rnn.weight_hh_l0, prior, seed=seed)   # Wc: signed wiring, spectral radius 0.95
torch.nn.init.xavier_uniform_(rnn.weight_ih_l0)    # inputs and biases as in BatchedRNN
torch.nn.init.zeros_(rnn.bias_ih_l0)
torch.nn.init.zeros_(rnn.bias_hh_l0)
dale = ConnectomeConstraint(prior)                 # zero off the wiring, presynaptic cell's sign
parametrize.register_parametrization(rnn, "weight_hh_l0", dale)
penalty = WiringDistanceCommunicability(prior)     # D*C
opt = torch.optim.Adam([*rnn.parameters(), *readout.parameters()], lr=1e-3)
x, y = make_task("T2", 5120, seed=1)               # (5120, 40, 3) inputs, (5120,) labels
for epoch in range(10):
    for i in range(0, len(x), 128):
        out, _ = rnn(x[i:i + 128])                 # (128, 40, n)
        task = torch.nn.functional.cross_entropy(readout(out[:, -1]), y[i:i + 128])
        loss = task + penalty(rnn.weight_hh_l0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"epoch {epoch}: task loss {task.item():.3f}, "
          f"penalty {penalty(rnn.weight_hh_l0).item():.3f}")
x_test, y_test = make_task("T2", 1024, seed=2)
with torch.no_grad():
    accuracy = (readout(rnn(x_test)[0][:, -1]).argmax(-1) == y_test).float().mean()
    violations = int(dale.violations(rnn.weight_hh_l0).sum())
print(f"held-out accuracy {accuracy:.3f}, Dale/support violations {violations}")
