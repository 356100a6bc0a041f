#!/usr/bin/env python3
"""Input throughput of FairCLIP's data pipeline, without torch: the Python peer of fairvlm's
input benchmark.

    .venv/bin/python benches/peer/fairclip_input.py .bench/fairvlm-2000 [--split Training] \
        [--size 224] [--workers 2] [--batch 32] [--limit 0] -o .bench/peer-input.json

For every `.npz` of DIR/<split>, sorted by name (the first --limit of them when --limit > 0), it
does what FairCLIP's `fair_vl_med_dataset.__getitem__` does to a subject:

  np.load; slo_fundus.astype(float32); PIL.Image.fromarray (mode "F"); CLIP's preprocessing as
  torchvision runs it on a PIL image: Resize(size, BICUBIC) of the shorter side (the longer
  becomes int(size * long / short)), CenterCrop(size) at top = int(round((h - size) / 2.0)) and
  likewise left, convert("RGB"), to float32 / 255, channels first, Normalize with CLIP's mean
  and std; the note (`note`, stripped and cut by FairCLIP's truncate_note to 180 characters; it is
  not tokenised, as there is no CLIP tokenizer here) and the ints glaucoma, race, gender,
  ethnicity, language.

It is driven like a torch DataLoader(batch_size=--batch, num_workers=--workers, shuffle=False):
a fork multiprocessing Pool of --workers processes, each task one batch of consecutive files,
which the worker loads and collates (np.stack) into float32 [B, 3, size, size] images and an
int64 [B, 5] label/attribute array; the main process receives the batches in order
(Pool.imap). With --transfer shm (the default) a worker collates the images straight into a new
shared-memory block and sends only its name, which the main process maps, uses and unlinks, as
torch's workers do with shared-memory tensors; with --transfer pipe the arrays are pickled
through the pool's pipe (a copy of 600 KB an image, which costs about as much as the
preprocessing itself).

Timing: from just before the pool starts to the last batch received (so pool start-up is in,
interpreter start-up is not); `seconds_without_pool_startup` starts once Pool() has returned.
Writes -o OUT.json with images, seconds, images_per_second, workers, batch, size, the peak RSS of
the main process and of the (joined) worker processes in MiB (getrusage ru_maxrss / 1024), and a
checksum: the mean of all normalised pixel values over all images (float64; each worker sums its
batch in float64, the main process adds the sums in batch order), for comparison with another
implementation. Prints a one-line summary. Needs numpy and Pillow.
"""
import argparse
import json
import multiprocessing as mp
import os
import resource
import time
from multiprocessing import resource_tracker, shared_memory

import numpy as np
from PIL import Image

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32).reshape(3, 1, 1)
SIZE = 224


def truncate_note(note, max_length=180):
    """FairCLIP's truncate_note: cut to max_length characters, then back to the last space."""
    if len(note) > max_length:
        note = note[:max_length]
        note = note[:note.rfind(" ")]
    return note


def clip_preprocess(im, size):
    """torchvision Resize(size, BICUBIC) + CenterCrop(size) + RGB + ToTensor + Normalize."""
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    im = im.resize((new_w, new_h), Image.BICUBIC)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    im = im.crop((left, top, left + size, top + size)).convert("RGB")
    x = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)
    return (x - MEAN) / STD


def get_item(path):
    data = np.load(path)
    slo_fundus = data["slo_fundus"].astype(np.float32)  # original size: (664, 512)
    image = clip_preprocess(Image.fromarray(slo_fundus), SIZE)
    note = truncate_note(data["note"].item().strip())
    labels = [int(data[k].item()) for k in ("glaucoma", "race", "gender", "ethnicity", "language")]
    return image, note, labels


def load_batch(paths):
    """One batch, collated; the images come back pickled through the pool's pipe."""
    items = [get_item(p) for p in paths]
    images = np.stack([it[0] for it in items])
    labels = np.array([it[2] for it in items], dtype=np.int64)
    notes = [it[1] for it in items]
    return images, notes, labels, float(np.sum(images, dtype=np.float64))


def load_batch_shm(paths):
    """One batch, collated into a new shared-memory block (as torch's default_collate does in a
    worker); only the block's name goes through the pipe. The main process unlinks it."""
    items = [get_item(p) for p in paths]
    shape = (len(items),) + items[0][0].shape
    shm = shared_memory.SharedMemory(create=True, size=int(np.prod(shape)) * 4)
    images = np.ndarray(shape, dtype=np.float32, buffer=shm.buf)
    np.stack([it[0] for it in items], out=images)
    total = float(np.sum(images, dtype=np.float64))
    del images
    name = shm.name
    shm.close()
    labels = np.array([it[2] for it in items], dtype=np.int64)
    return (name, shape), [it[1] for it in items], labels, total


def init_worker(size):
    global SIZE
    SIZE = size


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir")
    p.add_argument("--split", default="Training")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--transfer", choices=["shm", "pipe"], default="shm",
                   help="shm: batches in shared memory, as torch's DataLoader; pipe: pickled through the pool's pipe")
    p.add_argument("-o", "--out", required=True)
    a = p.parse_args()
    folder = os.path.join(a.dir, a.split)
    files = sorted(f for f in os.listdir(folder) if f.endswith(".npz"))
    if a.limit > 0:
        files = files[:a.limit]
    paths = [os.path.join(folder, f) for f in files]
    batches = [paths[i:i + a.batch] for i in range(0, len(paths), a.batch)]
    init_worker(a.size)

    n, pixel_sum, label_sum = 0, 0.0, np.zeros(5, dtype=np.int64)
    load_fn = load_batch_shm if a.transfer == "shm" else load_batch
    ctx = mp.get_context("fork")
    resource_tracker.ensure_running()   # one tracker, shared by the forked workers
    start = time.perf_counter()
    pool = ctx.Pool(a.workers, initializer=init_worker, initargs=(a.size,))
    started = time.perf_counter()
    for images, notes, labels, s in pool.imap(load_fn, batches, chunksize=1):
        if a.transfer == "shm":
            (name, shape) = images
            shm = shared_memory.SharedMemory(name=name)
            images = np.ndarray(shape, dtype=np.float32, buffer=shm.buf)
        assert images.shape == (len(notes), 3, a.size, a.size) and images.dtype == np.float32
        n += images.shape[0]
        if a.transfer == "shm":
            del images
            shm.close()
            shm.unlink()
        pixel_sum += s
        label_sum += labels.sum(axis=0)
    end = time.perf_counter()
    pool.close()
    pool.join()

    seconds = end - start
    checksum = pixel_sum / (n * 3 * a.size * a.size) if n else float("nan")
    result = {
        "images": n,
        "seconds": seconds,
        "images_per_second": n / seconds,
        "seconds_without_pool_startup": end - started,
        "images_per_second_without_pool_startup": n / (end - started),
        "workers": a.workers,
        "batch": a.batch,
        "size": a.size,
        "transfer": a.transfer,
        "split": a.split,
        "peak_rss_mib_main": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_mib_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "checksum_mean_pixel": checksum,
        "label_sums": dict(zip(["glaucoma", "race", "gender", "ethnicity", "language"], label_sum.tolist())),
        "numpy": np.__version__,
        "pillow": Image.__version__,
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"{n} images ({a.split}, {a.size} px) in {seconds:.2f} s: {n / seconds:.1f} images/s "
          f"({n / (end - started):.1f} without pool start-up), {a.workers} workers, batch {a.batch}, {a.transfer}; "
          f"peak RSS main {result['peak_rss_mib_main']:.0f} MiB, children {result['peak_rss_mib_children']:.0f} MiB")
    print(f"checksum (mean normalised pixel): {checksum:.12f}")


if __name__ == "__main__":
    main()
