"""`pkctl completion bash|zsh`: a shell completion script, made from pkctl's own argparse parsers.

It completes commands, their verbs (`cluster up`, `config view`...), their flags, and resource types where a
command takes a KIND. Load it with `source <(pkctl completion bash)` (zsh: `source <(pkctl completion zsh)`,
which runs the bash script through zsh's bashcompinit).
"""
from __future__ import annotations

import argparse

from pklib.resources import all_resources

from ..errors import CommandError

SHELLS = ("bash", "zsh")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("completion", help="print a shell completion script (bash or zsh)",
                       description="Print a completion script: `source <(pkctl completion bash)` in ~/.bashrc, "
                                   "or `source <(pkctl completion zsh)` in ~/.zshrc.")
    p.add_argument("shell", metavar="SHELL", help="bash or zsh")
    p.set_defaults(func=command)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return sorted({s for a in parser._actions for s in a.option_strings if s.startswith("--") or len(s) == 2})


def _takes_kind(parser: argparse.ArgumentParser) -> bool:
    return any(not a.option_strings and "KIND" in str(a.metavar or "") for a in parser._actions)


def resource_words() -> list[str]:
    words: set[str] = set()
    for res in all_resources():
        words.update((res.plural, res.singular, *res.short_names))
    return sorted(words)


def bash_script() -> str:
    from ..main import build_parser
    top = build_parser()
    commands = _subparsers(top)
    cases = []
    for name, parser in sorted(commands.items()):
        verbs = _subparsers(parser)
        words = sorted(verbs) + (["$types"] if _takes_kind(parser) else [])
        flags = set(_flags(parser))
        for verb in verbs.values():
            flags.update(_flags(verb))
        cases.append(f'        {name}) flags="{" ".join(sorted(flags))}"; words="{" ".join(words)}" ;;')
    value_flags = sorted({s for a in top._actions for s in a.option_strings if a.nargs != 0})
    return f"""# pkctl completion for bash: source <(pkctl completion bash)
_pkctl() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" cmd="" flags="" words="" i skip=0
    local types="{" ".join(resource_words())}"
    for ((i = 1; i < COMP_CWORD; i++)); do
        if ((skip)); then skip=0; continue; fi
        case "${{COMP_WORDS[i]}}" in
            {"|".join(value_flags)}) skip=1 ;;
            -*) ;;
            *) cmd="${{COMP_WORDS[i]}}"; break ;;
        esac
    done
    if [[ -z "$cmd" ]]; then
        if [[ "$cur" == -* ]]; then
            COMPREPLY=($(compgen -W "{" ".join(_flags(top))}" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "{" ".join(sorted(commands))}" -- "$cur"))
        fi
        return 0
    fi
    case "$cmd" in
{chr(10).join(cases)}
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    fi
    return 0
}}
complete -o default -F _pkctl pkctl
"""


def zsh_script() -> str:
    return ("#compdef pkctl\n# pkctl completion for zsh: source <(pkctl completion zsh)\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + bash_script())


def command(args: argparse.Namespace) -> int:
    if args.shell not in SHELLS:
        raise CommandError(f'Unsupported shell type "{args.shell}".')
    print(bash_script() if args.shell == "bash" else zsh_script(), end="")
    return 0
