"""Generator on Replicate's predictions API (https://replicate.com/docs/reference/http).

One prediction per variant:
1. POST /predictions {version, input} (or POST /models/{owner}/{name}/predictions {input} when no version is
   pinned) with `Prefer: wait=N`: Replicate holds the request up to N seconds and often answers finished.
2. Otherwise poll `urls.get` until a terminal status (succeeded | failed | canceled | aborted) or our deadline;
   at the deadline POST `urls.cancel` so we stop paying, and fail with PROVIDER_TIMEOUT.
3. Download the output image (a URL, or a list of URLs: the last is the final image).

HTTP 429 and 5xx are retried a few times (honouring Retry-After, within the deadline); 402 (billing), 401/403
(token) and 422 (input refused) are permanent. A `failed` prediction whose error mentions NSFW/safety is
PROVIDER_REJECTED_PROMPT so the frontend can ask for another prompt.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

import requests

from lib.config import get_settings
from lib.providers import (
    AUTH,
    BAD_RESPONSE,
    BILLING,
    FAILED,
    RATE_LIMIT,
    REJECTED_INPUT,
    REJECTED_PROMPT,
    TIMEOUT,
    UNAVAILABLE,
    GenerationRequest,
    ProviderError,
    build_prompt,
)
from lib.retries import next_attempt, retry_after_seconds

log = logging.getLogger("zipkku.providers.replicate")

TERMINAL = {"succeeded", "failed", "canceled", "aborted"}
_SAFETY_WORDS = ("nsfw", "safety", "sensitive", "flagged", "inappropriate")
NEGATIVE_PROMPT = "lowres, watermark, banner, logo, text, deformed, blurry, out of focus, ugly, distorted"


def model_input(model: str, request: GenerationRequest, image: str, seed: int) -> dict[str, Any]:
    """Map our request onto the input schema of the ControlNet interior models we use."""
    prompt = build_prompt(request)
    if model.startswith("jagilley/controlnet"):  # controlnet-hough / -canny / -depth: what the old backend used
        return {
            "image": image, "prompt": prompt, "a_prompt": "best quality, extremely detailed",
            "n_prompt": NEGATIVE_PROMPT, "num_samples": "1", "image_resolution": "512", "ddim_steps": 20,
            "scale": 9.0, "seed": seed,
        }
    # adirik/interior-design and models with the same schema
    return {
        "image": image, "prompt": prompt, "negative_prompt": NEGATIVE_PROMPT, "num_inference_steps": 50,
        "guidance_scale": 15, "prompt_strength": round(max(0.05, min(1.0, request.strength)), 3), "seed": seed,
    }


class ReplicateGenerator:
    name = "replicate"

    def __init__(self) -> None:
        self.http = requests.Session()

    # --- the public call ------------------------------------------------------------------------------------

    def generate(self, request: GenerationRequest, seed: int) -> bytes:
        s = get_settings()
        deadline = time.monotonic() + s.replicate_deadline_seconds
        image = request.image_url or "data:image/jpeg;base64," + base64.b64encode(request.image).decode()
        body: dict[str, Any] = {"input": model_input(s.replicate_model, request, image, seed)}
        if s.replicate_version:
            body["version"] = s.replicate_version
            url = f"{s.replicate_api_url}/predictions"
        else:
            url = f"{s.replicate_api_url}/models/{s.replicate_model}/predictions"
        prediction = self._call("POST", url, deadline, creates=True, json=body,
                                headers={"Prefer": f"wait={s.replicate_wait_seconds}"})
        while prediction.get("status") not in TERMINAL:
            if time.monotonic() >= deadline:
                self._cancel(prediction)
                raise ProviderError(TIMEOUT, "The image generator did not finish in time.", retryable=True)
            time.sleep(min(s.replicate_poll_seconds, max(0.0, deadline - time.monotonic())))
            prediction = self._call("GET", self._url(prediction, "get"), deadline)
        return self._download(self._finished_output(prediction), deadline)

    # --- helpers --------------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {get_settings().replicate_api_token.get_secret_value()}",
                "Content-Type": "application/json", "User-Agent": "zipkku-backend"}

    def _call(self, method: str, url: str, deadline: float, *, creates: bool = False,
              **kwargs: Any) -> dict[str, Any]:
        """One API call with retries for 429/5xx/connection errors; a prediction dict or a ProviderError.

        `creates`: the call creates a prediction. Its error says work_started=False only when every attempt got
        an error ANSWER (402, 422, 429, 5xx: no prediction exists, nothing ran or is billed); an attempt that got
        no answer (a timeout, a reset) may have created one, so the work counts as started."""
        s = get_settings()
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        attempt = 0
        maybe_created = False
        while True:
            timeout = max(1.0, min(deadline - time.monotonic(), s.replicate_wait_seconds + 10.0))
            try:
                response = self.http.request(method, url, headers=headers, timeout=timeout, **kwargs)
            except requests.RequestException as exc:
                maybe_created = True
                error = ProviderError(UNAVAILABLE, f"The image generator is unreachable ({type(exc).__name__}).",
                                      retryable=True)
                wait = s.replicate_retry_backoff_seconds * 2**attempt
            else:
                if response.status_code < 300:
                    try:
                        prediction = response.json()
                    except ValueError:
                        raise ProviderError(BAD_RESPONSE, "The image generator sent a malformed answer.",
                                            retryable=True) from None
                    if not isinstance(prediction, dict) or not isinstance(prediction.get("status"), str):
                        raise ProviderError(BAD_RESPONSE, "The image generator sent an answer without a status.",
                                            retryable=True)
                    return prediction
                error = _http_error(response)
                wait = retry_after_seconds(response, s.replicate_retry_backoff_seconds * 2**attempt)
            error.work_started = maybe_created or not creates
            if not error.retryable:
                raise error
            attempt = next_attempt(attempt, error, wait, retries=s.replicate_retries, what=f"replicate {method}",
                                   reason=error.code, deadline=deadline)

    def _url(self, prediction: dict[str, Any], kind: str) -> str:
        url = (prediction.get("urls") or {}).get(kind)
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ProviderError(BAD_RESPONSE, f"The image generator's answer has no {kind} URL.", retryable=True)
        return url

    def _cancel(self, prediction: dict[str, Any]) -> None:
        try:
            self.http.post(self._url(prediction, "cancel"), headers=self._headers(), timeout=10)
        except (requests.RequestException, ProviderError) as exc:  # best effort: the timeout is what we report
            log.warning("could not cancel prediction %s: %s", prediction.get("id"), type(exc).__name__)

    def _finished_output(self, prediction: dict[str, Any]) -> str:
        status = prediction["status"]
        if status == "succeeded":
            output = prediction.get("output")
            if isinstance(output, list):
                output = output[-1] if output else None  # controlnet models return [control map, image]
            if not isinstance(output, str) or not output.startswith(("http://", "https://", "data:")):
                raise ProviderError(BAD_RESPONSE, "The image generator finished without an image.", retryable=True)
            return output
        error = str(prediction.get("error") or "")
        if status == "failed" and any(word in error.lower() for word in _SAFETY_WORDS):
            raise ProviderError(REJECTED_PROMPT, "The image generator refused this prompt or photo; "
                                "try another prompt.")
        if status == "failed":
            raise ProviderError(FAILED, "The image generator failed on this photo.", retryable=True)
        raise ProviderError(FAILED, f"The image generation was {status}.", retryable=status == "aborted")

    def _download(self, output: str, deadline: float) -> bytes:
        if output.startswith("data:"):
            try:
                return base64.b64decode(output.split(",", 1)[1], validate=True)
            except (IndexError, ValueError):
                raise ProviderError(BAD_RESPONSE, "The generated image is malformed.", retryable=True) from None
        try:
            response = self.http.get(output, timeout=max(1.0, min(60.0, deadline - time.monotonic())))
        except requests.RequestException:
            raise ProviderError(UNAVAILABLE, "The generated image could not be downloaded.", retryable=True) from None
        if response.status_code != 200 or not response.content:
            raise ProviderError(UNAVAILABLE, "The generated image could not be downloaded.", retryable=True)
        return response.content


def _http_error(response: requests.Response) -> ProviderError:
    status = response.status_code
    if status == 402:
        return ProviderError(BILLING, "The image generator's account is out of credit.")
    if status in (401, 403):
        return ProviderError(AUTH, "The image generator refused our credentials.")
    if status == 422:
        return ProviderError(REJECTED_INPUT, "The image generator refused the request's input.")
    if status == 429:
        return ProviderError(RATE_LIMIT, "The image generator is rate limiting us; try again shortly.",
                             retryable=True)
    if status >= 500:
        return ProviderError(UNAVAILABLE, "The image generator is unavailable; try again shortly.", retryable=True)
    return ProviderError(FAILED, f"The image generator answered HTTP {status}.")


