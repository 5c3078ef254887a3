"""What every Python step of the ensemble does with a batch of requests: one response each.

A request's own problem (`RequestError`) is answered as INVALID_ARGUMENT with its code in brackets;
anything else as INTERNAL with one short line, the traceback going to Triton's log only, so no
answer shows server paths. Each response gets its own error object: Triton frees each one.
"""
from __future__ import annotations

import traceback
from typing import Callable

from finer.serving import coded


class RequestError(ValueError):
    """A problem with the request itself: answered as INVALID_ARGUMENT, its code in brackets."""

    def __init__(self, code: str, message: str):
        super().__init__(coded(code, message))


def respond(pb_utils, requests, handle: Callable, step: str) -> list:
    """`handle(request)` -> output tensors, for each request, as responses in the same order."""
    responses = []
    for request in requests:
        try:
            responses.append(pb_utils.InferenceResponse(output_tensors=handle(request)))
        except RequestError as e:
            responses.append(pb_utils.InferenceResponse(
                error=pb_utils.TritonError(str(e), pb_utils.TritonError.INVALID_ARG)))
        except Exception as e:  # noqa: BLE001 - one request's failure must not fail the batch or the stub
            pb_utils.Logger.log_error(f"{step}: {traceback.format_exc()}")
            responses.append(pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"{step} failed on this request ({type(e).__name__}); see the server log",
                                           pb_utils.TritonError.INTERNAL)))
    return responses


def get(pb_utils, request, name: str):
    """An input as numpy; None when an optional input was not sent."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()
