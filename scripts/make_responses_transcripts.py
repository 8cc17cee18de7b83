# ruff: noqa: E501  (the transcripts are long prose and JSON strings)
"""Write tests/testdata/responses/codex_*.json: /v1/responses requests shaped like the ones
Codex sends (long instructions, 21 function tools, a freeform apply_patch tool with its
grammar, the hosted web_search, earlier turns replayed as items), written from the OpenAI
Responses API reference. Run from the repository root; the tests read the JSON files.
"""

import json
from pathlib import Path

OUT = Path("tests/testdata/responses")

SECTIONS = [
    (
        "General",
        "You are a coding agent running in a terminal on the user's machine. You help the user with software engineering tasks in the repository that is the current working directory: reading code, running commands, editing files and explaining what you did. Be precise, safe and helpful.",
    ),
    (
        "Personality",
        "Your default tone is concise, direct and friendly. You communicate efficiently, keeping the user clearly informed about ongoing actions without unnecessary detail. Prioritise actionable guidance, clearly stating assumptions, environment prerequisites and next steps.",
    ),
    (
        "Planning",
        "For tasks that need several steps, keep a short plan with the update_plan tool. A plan has between three and seven steps of at most a few words each; exactly one step is in progress at a time. Mark steps completed as you finish them. Do not make plans for simple or single-step queries that you can answer at once.",
    ),
    (
        "Running commands",
        "Use the shell tool to run commands. Prefer fast search tools such as ripgrep for finding text and files. Read files in chunks of at most two hundred and fifty lines. Never run commands that need an interactive terminal. When a command fails, read its output carefully before retrying, and do not retry the same failing command more than twice.",
    ),
    (
        "Editing files",
        "Edit files with the apply_patch tool, one coherent change per call. Keep the existing style of each file: its indentation, naming and comment conventions. Do not add license headers or copyright notices. Do not fix unrelated bugs or failing tests; mention them to the user instead. Never revert changes you did not make.",
    ),
    (
        "Validating your work",
        "If the repository has tests, run the ones that cover the code you changed, starting with the most specific. Add tests for the behaviour you changed when there is a pattern to follow. Run formatters and linters the project already uses. Do not add new tools or dependencies to validate your work.",
    ),
    (
        "Sandbox and approvals",
        "Commands run in a sandbox: the workspace is writable, the network is off. When a command needs more, ask for approval by setting with_escalated_permissions and giving a one-sentence justification. Destructive commands such as rm -rf or git reset --hard always need explicit approval from the user.",
    ),
    (
        "Final answer",
        "End with a short summary: what you changed, file by file, how you validated it, and anything left undone. Use plain text with short bullet lists where they help. Reference files by their relative paths with line numbers, such as src/app.py:42. Do not paste large files you have written; say where they are.",
    ),
]
instructions = "\n\n".join(f"# {title}\n\n{body}\n\n{body}" for title, body in SECTIONS * 2)


def fn(name, description, properties, required):
    return {
        "type": "function",
        "name": name,
        "description": description,
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        },
    }


S = {"type": "string"}
TOOLS = [
    fn(
        "shell",
        "Runs a shell command and returns its output.",
        {
            "command": {
                "type": "array",
                "items": S,
                "description": "The command and its arguments",
            },
            "workdir": {"type": "string", "description": "The working directory"},
            "timeout_ms": {"type": "number", "description": "The timeout in milliseconds"},
        },
        ["command"],
    ),
    {
        "type": "custom",
        "name": "apply_patch",
        "description": "Use the `apply_patch` tool to edit files. This is a FREEFORM tool, so do not wrap the patch in JSON.",
        "format": {
            "type": "grammar",
            "syntax": "lark",
            "definition": 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\nend_patch: "*** End Patch" LF?\nhunk: add_hunk | delete_hunk | update_hunk\nadd_hunk: "*** Add File: " filename LF add_line+\ndelete_hunk: "*** Delete File: " filename LF\nupdate_hunk: "*** Update File: " filename LF change?\nfilename: /(.+)/\nadd_line: "+" /(.*)/ LF -> line\nchange: (change_context | change_line)+\nchange_context: ("@@" | "@@ " /(.+)/) LF\nchange_line: ("+" | "-" | " ") /(.*)/ LF\n%import common.LF\n',
        },
    },
    fn(
        "update_plan",
        "Updates the task plan.",
        {
            "explanation": S,
            "plan": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "step": S,
                        "status": {
                            "type": "string",
                            "enum": ["pending", "in_progress", "completed"],
                        },
                    },
                    "required": ["step", "status"],
                },
            },
        },
        ["plan"],
    ),
    fn(
        "read_file",
        "Reads lines of a file.",
        {"path": S, "offset": {"type": "integer"}, "limit": {"type": "integer"}},
        ["path"],
    ),
    fn("list_dir", "Lists a directory.", {"path": S, "depth": {"type": "integer"}}, ["path"]),
    fn(
        "grep_files",
        "Searches files for a regular expression.",
        {"pattern": S, "path": S, "include": S, "limit": {"type": "integer"}},
        ["pattern"],
    ),
    fn("view_image", "Attaches a local image to the conversation.", {"path": S}, ["path"]),
    fn("write_file", "Writes a whole file.", {"path": S, "content": S}, ["path", "content"]),
    fn("delete_file", "Deletes a file.", {"path": S}, ["path"]),
    fn(
        "move_file",
        "Moves or renames a file.",
        {"source": S, "destination": S},
        ["source", "destination"],
    ),
    fn("git_status", "Shows the working tree status.", {}, []),
    fn(
        "git_diff",
        "Shows changes between commits or the working tree.",
        {"paths": {"type": "array", "items": S}, "staged": {"type": "boolean"}},
        [],
    ),
    fn("git_log", "Shows commit logs.", {"limit": {"type": "integer"}, "path": S}, []),
    fn(
        "run_tests",
        "Runs the project's tests.",
        {"selector": S, "timeout_ms": {"type": "integer"}},
        [],
    ),
    fn(
        "format_code",
        "Runs the project's formatter on paths.",
        {"paths": {"type": "array", "items": S}},
        ["paths"],
    ),
    fn(
        "lint",
        "Runs the project's linters on paths.",
        {"paths": {"type": "array", "items": S}},
        ["paths"],
    ),
    fn(
        "search_symbols",
        "Finds definitions of a symbol.",
        {"name": S, "kind": {"type": "string", "enum": ["function", "class", "variable"]}},
        ["name"],
    ),
    fn("find_references", "Finds references to a symbol.", {"name": S, "path": S}, ["name"]),
    fn("open_url", "Fetches a web page as text (network permitting).", {"url": S}, ["url"]),
    fn(
        "ask_user",
        "Asks the user a question and waits for the answer.",
        {"question": S},
        ["question"],
    ),
    fn("list_mcp_resources", "Lists resources an MCP server offers.", {"server": S}, []),
    fn("read_mcp_resource", "Reads one MCP resource.", {"server": S, "uri": S}, ["server", "uri"]),
    {"type": "web_search"},
]


def user(text):
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


ENV = "<environment_context>\n  <cwd>/home/dev/project</cwd>\n  <approval_policy>on-request</approval_policy>\n  <sandbox_mode>workspace-write</sandbox_mode>\n  <network_access>restricted</network_access>\n  <shell>bash</shell>\n</environment_context>"
AGENTS = "<user_instructions>\nRun `make test` before you finish. Keep functions small.\n</user_instructions>"
ASK = "The tests in tests/test_dates.py fail since yesterday. Find out why and fix it."

base = {
    "model": "MODEL",
    "instructions": instructions,
    "tools": TOOLS,
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
    "text": {"verbosity": "medium"},
}

turn1 = {**base, "input": [user(AGENTS), user(ENV), user(ASK)]}

call1 = {
    "type": "function_call",
    "name": "shell",
    "arguments": json.dumps(
        {
            "command": ["bash", "-lc", "pytest -q tests/test_dates.py"],
            "workdir": "/home/dev/project",
        }
    ),
    "call_id": "call_kx81Qm0a",
}
out1 = {
    "type": "function_call_output",
    "call_id": "call_kx81Qm0a",
    "output": json.dumps(
        {
            "output": "F.\n____ test_parse_iso ____\n    assert parse('2024-02-29') == date(2024, 2, 29)\nE   ValueError: day is out of range for month\n1 failed, 1 passed in 0.04s\n",
            "metadata": {"exit_code": 1, "duration_seconds": 0.6},
        }
    ),
}
call2 = {
    "type": "function_call",
    "name": "read_file",
    "arguments": json.dumps({"path": "src/dates.py", "offset": 1, "limit": 80}),
    "call_id": "call_Zp02Lr9c",
}
out2 = {
    "type": "function_call_output",
    "call_id": "call_Zp02Lr9c",
    "output": "L1: from datetime import date\nL2: \nL3: def parse(text: str) -> date:\nL4:     year, month, day = (int(part) for part in text.split('-'))\nL5:     if month == 2 and day > 28:\nL6:         raise ValueError('day is out of range for month')\nL7:     return date(year, month, day)\n",
}
reasoning = {
    "type": "reasoning",
    "summary": [
        {
            "type": "summary_text",
            "text": "**Running the failing test**\n\nI will run the failing test file first to see the error.",
        }
    ],
    "content": None,
    "encrypted_content": None,
}
preamble = {
    "type": "message",
    "role": "assistant",
    "content": [{"type": "output_text", "text": "I'll run the failing tests first."}],
}
turn2 = {
    **base,
    "input": [user(AGENTS), user(ENV), user(ASK), reasoning, preamble, call1, out1, call2, out2],
}
turn3 = {
    **base,
    "stream": False,
    "tool_choice": "required",
    "input": [
        *turn2["input"],
        {
            "type": "custom_tool_call",
            "name": "apply_patch",
            "input": "*** Begin Patch\n*** Update File: src/dates.py\n@@\n-    if month == 2 and day > 28:\n-        raise ValueError('day is out of range for month')\n     return date(year, month, day)\n*** End Patch\n",
            "call_id": "call_Ap9",
        },
        {
            "type": "custom_tool_call_output",
            "call_id": "call_Ap9",
            "output": [
                {
                    "type": "input_text",
                    "text": "Success. Updated the following files:\nM src/dates.py\n",
                }
            ],
        },
    ],
}

for name, body in [("codex_turn1", turn1), ("codex_turn2", turn2), ("codex_turn3_forced", turn3)]:
    (OUT / f"{name}.json").write_text(json.dumps(body, indent=2) + "\n")
    print(name, len(json.dumps(body)), len(body["tools"]), len(body["input"]))
