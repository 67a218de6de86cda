# The Python sample of the DashScope StableDiffusion spec, unchanged except for the
# three lines below that point the SDK at synthgate (the README's only instruction).
import os
import dashscope

dashscope.base_http_api_url = os.environ["SYNTHGATE_API_URL"]

from http import HTTPStatus
from urllib.parse import urlparse, unquote
from pathlib import PurePosixPath
import requests
from dashscope import ImageSynthesis

model = "stable-diffusion-xl"
prompt = "Eagle flying freely in the blue sky and white clouds"


def sample_block_call():
    rsp = ImageSynthesis.call(
        model=model, prompt=prompt, negative_prompt="garfield", n=1, size="1024*1024"
    )
    if rsp.status_code == HTTPStatus.OK:
        print(rsp.output)
        print(rsp.usage)
        # save file to current directory
        for result in rsp.output.results:
            file_name = PurePosixPath(unquote(urlparse(result.url).path)).parts[-1]
            with open("./%s" % file_name, "wb+") as f:
                f.write(requests.get(result.url).content)
    else:
        print(
            "Failed, status_code: %s, code: %s, message: %s"
            % (rsp.status_code, rsp.code, rsp.message)
        )


def sample_async_call():
    rsp = ImageSynthesis.async_call(
        model=model, prompt=prompt, negative_prompt="garfield", n=1, size="512*512"
    )
    if rsp.status_code == HTTPStatus.OK:
        print(rsp.output)
        print(rsp.usage)
    else:
        print(
            "Failed, status_code: %s, code: %s, message: %s"
            % (rsp.status_code, rsp.code, rsp.message)
        )
    status = ImageSynthesis.fetch(rsp)
    if status.status_code == HTTPStatus.OK:
        print(status.output.task_status)
    else:
        print(
            "Failed, status_code: %s, code: %s, message: %s"
            % (status.status_code, status.code, status.message)
        )

    rsp = ImageSynthesis.wait(rsp)
    if rsp.status_code == HTTPStatus.OK:
        print(rsp.output)
    else:
        print(
            "Failed, status_code: %s, code: %s, message: %s"
            % (rsp.status_code, rsp.code, rsp.message)
        )


if __name__ == "__main__":
    sample_block_call()
    sample_async_call()
