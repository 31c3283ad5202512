"""lightning-tx command line: ``python train.py {rank,fit,confirm,validate,test} --help``."""

from lightning_tx.cli import main

if __name__ == "__main__":
    main()
