"""`python -m vaelab …`, as torchrun starts each training process: `torchrun --nproc-per-node 2 -m vaelab train …`."""

from vaelab.cli import main

if __name__ == "__main__":
    main()
