"""XOR, as in the Rust tiny-ml example: 2->4->1 tanh, SGD lr 0.1, sum of squared errors.

    python examples/xor_demo.py [--epochs N] [--seed S] [--lr LR]
"""

from __future__ import annotations

import argparse

import tinyml as tm

INPUTS = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
TARGETS = [0.0, 1.0, 1.0, 0.0]
REPORT_EVERY = 500


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")

    model = tm.MLP(2, [4, 1], args.lr, tm.Activation.TANH, seed=args.seed, init="uniform01")
    print("Initial training start...")
    print("-" * 32)
    for epoch in range(args.epochs):
        outputs = [model(x)[0] for x in INPUTS]
        loss = tm.losses.mse(outputs, TARGETS, reduction="sum")
        model.zero_grad()
        loss.backward()
        model.update()
        if epoch % REPORT_EVERY == 0 or epoch == args.epochs - 1:
            print(f"Epoch {epoch:3} | Total Loss: {loss.data:.6f}")
    print("-" * 32)
    print("Final Predictions:")
    for x, y in zip(INPUTS, TARGETS):
        prediction = model(x)[0].data
        print(f"Input: {x} | Target: {y} | Prediction: {prediction:.4f}")


if __name__ == "__main__":
    main()
