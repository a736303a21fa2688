"""Work spread over the machine's cores: one independent task per sample of a batch.

A batch's samples are analysed independently, so they go to a pool of processes (threads would
queue on the interpreter lock for the NumPy-light parts). What every task needs (a reference
panel, options) is handed to each worker once when it starts, not once per sample. Results come
back in the order of the inputs, so a batch's outputs do not depend on the number of workers.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

_shared: Any = None


def _set_shared(shared: Any) -> None:
    global _shared
    _shared = shared


def _call(task: tuple[Callable[[Any, Any], Any], Any]) -> Any:
    function, item = task
    return function(_shared, item)


def map_in_processes(
    function: Callable[[Any, Item], Result],
    items: Iterable[Item],
    shared: Any,
    workers: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[Result]:
    """`function(shared, item)` for every item, in input order, on up to `workers` processes
    (1: here, in this process). `function` must be a module-level function; an exception in
    any task is raised here."""
    items = list(items)
    results: list[Result] = []
    if workers <= 1 or len(items) <= 1:
        for item in items:
            results.append(function(shared, item))
            if progress:
                progress(len(results), len(items))
        return results
    # fork hands `shared` to the workers without pickling it; elsewhere it is pickled once per worker.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(
        min(workers, len(items)), mp_context=context, initializer=_set_shared, initargs=(shared,)
    ) as pool:
        for result in pool.map(_call, [(function, item) for item in items]):
            results.append(result)
            if progress:
                progress(len(results), len(items))
    return results
