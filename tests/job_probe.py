"""Run inside a submitted job: where do Ray workers import `refiner` from?

tests/test_job_submission.py submits it with the same runtime env as the training job
and checks the answer: the shipped ``py_modules`` copy, with ``platform`` still the
standard library module.
"""

import json
import platform

import ray


@ray.remote
def where_is_refiner() -> dict[str, str]:
    import platform

    import refiner

    return {"refiner": refiner.__file__, "platform": platform.python_version()}


if __name__ == "__main__":
    ray.init()
    print("PROBE", json.dumps(ray.get(where_is_refiner.remote())), flush=True)
    ray.shutdown()
    assert platform.python_version()
