#!/usr/bin/env bash
# Fetch the course datasets into datasets/ (or $COURSE_DATA_DIR). Safe to re-run: it keeps what is valid.
#   bash get_datasets.sh                 MNIST and Fashion-MNIST (required), CIFAR-10 (optional)
#   bash get_datasets.sh --coco          also the COCO captioning set (~1 GB)
#   bash get_datasets.sh --mirror DIR    copy from a local folder first (or set COURSE_DATA_MIRROR)
#   bash get_datasets.sh --only fashion-mnist    one dataset: mnist, fashion_mnist, cifar10, coco (or folder names)
#   bash get_datasets.sh --help          all options
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
# exec: signals (Ctrl+C, SIGTERM) reach the fetcher itself, which cleans up its temporary folders and children.
exec "$PYTHON" -m common.data.fetch "$@"
