"""``hf-unlearn push RUN_DIR``: export one run of a finished ``hf-unlearn run`` with its model card, and upload it to
the Hub (`hf_unlearn.hub`). Light at import: the Hub client loads when the command runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_push_parser(commands) -> None:
    push = commands.add_parser(
        "push",
        help="Push one unlearned model of a finished run to the Hugging Face Hub, with a model card.",
        description="Upload the weights (safetensors), config, image processor and a model card (metrics, method, "
        "hyperparameters, forget-set size and commitment; never the forget samples or their indices) of one run. "
        "Files an earlier push left in the repository (weights, configs, model code, card) and this export lacks are "
        "deleted in the same commit.",
    )
    push.add_argument("run_dir", type=Path, help="Output folder of `hf-unlearn run` (holds report.json).")
    push.add_argument("--repo-id", default=None, help="Hub repository OWNER/NAME (created if missing).")
    push.add_argument("--run", default=None, help="Which run to push (default: the only unlearning run).")
    push.add_argument("--private", action="store_true", help="Create the repository as private.")
    push.add_argument("--token", default=None, help="Hub token (default: the one saved by `hf auth login`).")
    push.add_argument("--commit-message", default=None, help="Commit message of the upload.")
    push.add_argument("--license", default=None, help="License id for the card (a Hub id: apache-2.0, mit, other ...).")
    push.add_argument(
        "--license-name",
        default=None,
        metavar="NAME",
        help="With --license other (required there): a short id of the license, lowercase with '-' and '.' "
        "(e.g. my-license-1.0).",
    )
    push.add_argument(
        "--license-link",
        default=None,
        metavar="URL_OR_PATH",
        help="With --license other: where the license text is, an http(s) URL or a file of the repository "
        "(default: LICENSE, which you add to the repository; the push does not write it).",
    )
    push.add_argument(
        "--revision", default=None, help="Branch to push to (created from main if missing; default: main)."
    )
    push.add_argument("--create-pr", action="store_true", help="Open a pull request instead of committing directly.")
    push.add_argument(
        "--export-dir",
        type=Path,
        default=None,
        help="Write the upload folder here (it must be new or empty); without --repo-id, export only, no upload.",
    )


def push_command(args: argparse.Namespace) -> int:
    from .hub import HubError, export_run, push_run
    from .hub_ids import CLI_LICENSE_KEYS, license_settings_problem

    licensing = {"license": args.license, "license_name": args.license_name, "license_link": args.license_link}
    try:
        # Checked here too (export_run checks again) so that the message names the flags.
        if problem := license_settings_problem(*licensing.values(), CLI_LICENSE_KEYS):
            raise HubError(problem)
        if args.repo_id is None:
            if args.export_dir is None:
                raise HubError("give --repo-id OWNER/NAME to push (or --export-dir DIR to only write the folder)")
            folder = export_run(args.run_dir, args.export_dir, args.run, **licensing)
            print(f"Wrote {folder} (not pushed: no --repo-id).")
            return 0
        url = push_run(
            args.run_dir,
            args.repo_id,
            args.run,
            private=args.private,
            token=args.token,
            commit_message=args.commit_message,
            export_dir=args.export_dir,
            **licensing,
            revision=args.revision,
            create_pr=args.create_pr,
        )
    except HubError as error:
        print(f"hf-unlearn push: error: {error}", file=sys.stderr)
        return 2
    print(f"Pushed to https://huggingface.co/{args.repo_id} ({url})")
    return 0
