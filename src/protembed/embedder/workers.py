"""The worker pool behind Embedder(devices=...): one spawned process per device, each
keeping its own model between calls."""

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from ..engine import embed_sequences
from ..errors import UserError
from .models import cached_adapter


class WorkerPool:
    """One worker process per device, started on first use and kept until close()."""

    def __init__(self, devices: str | list[str] | None):
        self.devices = worker_devices(devices)
        self._workers: list[ProcessPoolExecutor] = []

    def spread(self, model: tuple, prepared: list[str], settings: dict) -> list:
        """Each worker gets every n-th sequence by length, so all get similar work.
        `model`: (name, family, precision, compile)."""
        order = sorted(range(len(prepared)), key=lambda i: -len(prepared[i]))
        parts = [order[w :: len(self.devices)] for w in range(len(self.devices))]
        workers = self._started()
        futures = [
            worker.submit(_embed_in_worker, model, device, [prepared[i] for i in part], settings)
            for worker, device, part in zip(workers, self.devices, parts, strict=True)
            if part
        ]
        results: list = [None] * len(prepared)
        for part, future in zip(parts, futures, strict=False):
            for index, result in zip(part, future.result(), strict=True):
                results[index] = result
        return results

    def _started(self) -> list[ProcessPoolExecutor]:
        if not self._workers:
            threads = max(1, (os.cpu_count() or 1) // len(self.devices))
            self._workers = [
                ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=get_context("spawn"),  # CUDA cannot be forked
                    initializer=_start_worker,
                    initargs=(device, threads),
                )
                for device in self.devices
            ]
        return self._workers

    def close(self) -> None:
        """Stop the worker processes (their models go with them)."""
        for worker in self._workers:
            worker.shutdown()
        self._workers = []


def worker_devices(devices: str | list[str] | None) -> list[str]:
    """The devices of the worker processes: none (run here), every GPU, or those named."""
    if devices is None:
        return []
    if devices == "all":
        import torch

        count = torch.cuda.device_count()
        return [f"cuda:{i}" for i in range(count)] if count else ["cpu"]
    if isinstance(devices, str) or not all(isinstance(d, str) for d in devices):
        raise UserError(f"devices {devices!r} is not 'all' or a list such as ['cuda:0', 'cuda:1']")
    return list(devices)


def _start_worker(device: str, threads: int) -> None:
    """In a fresh worker: see only its own GPU (set before CUDA starts), share the CPUs."""
    if device.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
    import torch

    torch.set_num_threads(threads)


def _embed_in_worker(model: tuple, device: str, prepared: list[str], settings: dict) -> list:
    name, family, precision, compile = model
    local = "cuda" if device.startswith("cuda") else device
    adapter = cached_adapter(name, family, local, precision, compile)
    return embed_sequences(adapter, prepared, **settings)
