#!/usr/bin/env python3
"""Renders the expected chat prompts of tests/chat/data/rendered.json with the models' own Jinja templates.

Not run by CI: the vendor templates are not in this repository. Usage:
    python3 tests/chat/render_expected.py TEMPLATES_DIR > tests/chat/data/rendered.json
TEMPLATES_DIR holds the .jinja files named in FAMILIES (see tests/chat/README.md for where each comes from).
Rendering follows transformers' apply_chat_template: a sandboxed jinja2 environment with trim_blocks,
lstrip_blocks and the loopcontrols extension, `raise_exception`, `strftime_now` (fixed to DATE here, so that
the output does not depend on the day it is run) and `tojson`.
"""
import json
import os
import sys

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

DATE = "2026-01-15"  # what strftime_now("%Y-%m-%d") returns while rendering (gpt-oss)

# family, template file, bos text, eos text, extra template variables
FAMILIES = [
    ("chatml", "chatml.jinja", "", "", {}),
    ("qwen3", "Qwen-Qwen3-0.6B.jinja", "", "<|im_end|>", {}),
    ("deepseek3", "deepseek-v3.jinja", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", {}),
    ("deepseek-r1", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "<｜begin▁of▁sentence｜>",
     "<｜end▁of▁sentence｜>", {"enable_thinking": True}),
    ("deepseek3.1", "deepseek-ai-DeepSeek-V3.1.jinja", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", {}),
    ("kimi-k2", "Kimi-K2-Instruct.jinja", "[BOS]", "[EOS]", {}),
    ("glm4", "GLM-4.6.jinja", "", "<|endoftext|>", {}),
    ("gpt-oss", "openai-gpt-oss-120b.jinja", "<|startoftext|>", "<|return|>", {}),
    ("mistral-v0", "mistral-v0.jinja", "<s>", "</s>", {}),
    ("mistral-v1", "mistral-v1.jinja", "<s>", "</s>", {}),
    ("llama3", "llama3.jinja", "<|begin_of_text|>", "<|eot_id|>", {}),
    ("llama3.1", "meta-llama-Llama-3.1-8B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>", {}),
    ("olmoe", "olmoe.jinja", "<|endoftext|>", "<|endoftext|>", {}),
]

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
CASES = {
    # system + user + assistant + user, generation prompt on (the conversation every family is tested on)
    "conversation": ([SYSTEM, {"role": "user", "content": "Hello! Who are you?"},
                      {"role": "assistant", "content": "I am an assistant."},
                      {"role": "user", "content": "What is 2+2?"}], True),
    # no system message (default system prompts, first-turn BOS)
    "no_system": ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."},
                   {"role": "user", "content": "Bye"}], True),
    # an earlier answer with reasoning: templates with <think> handling drop or keep it
    "thinking": ([SYSTEM, {"role": "user", "content": "Q1"},
                  {"role": "assistant", "content": "<think>\nLet me think.\n</think>\n\nA1"},
                  {"role": "user", "content": "Q2"}], True),
    # one exchange without a system message, no generation prompt
    "no_system_answered": ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."}], False),
    # the conversation ending on the assistant's answer, no generation prompt (chat history)
    "answered": ([SYSTEM, {"role": "user", "content": "Hello! Who are you?"},
                  {"role": "assistant", "content": "I am an assistant."}], False),
}


def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    folder = sys.argv[1]
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: DATE
    env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False: json.dumps(x, indent=indent,
                                                                                 ensure_ascii=ensure_ascii)
    out = []
    for family, file, bos, eos, extra in FAMILIES:
        with open(os.path.join(folder, file), encoding="utf-8") as f:
            template = env.from_string(f.read())
        for name, (messages, gen) in CASES.items():
            case = name
            try:
                text = template.render(messages=messages, add_generation_prompt=gen, bos_token=bos, eos_token=eos,
                                       **extra)
            except jinja2.exceptions.TemplateError:
                # The reference refuses a system message (mistral-v0): moetier folds it into the first user
                # message, as mistralai's later 'v1' template does; expected is the reference's rendering of
                # the folded conversation.
                assert messages[0]["role"] == "system" and messages[1]["role"] == "user"
                folded = [{"role": "user", "content": messages[0]["content"] + "\n\n" + messages[1]["content"]}]
                text = template.render(messages=folded + messages[2:], add_generation_prompt=gen, bos_token=bos,
                                       eos_token=eos, **extra)
                case = case + "_system_folded"
            out.append({"family": family, "case": case, "template": file, "bos": bos, "eos": eos,
                        "add_generation_prompt": gen, "messages": messages, "expected": text})
    json.dump({"date": DATE, "cases": out}, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
