"""The command line: `python -m onnxstudy validate DIR` checks a Model Zoo model against its
tests without Snakemake.

Exit status: 0 when every test passed, 1 when one did not (mismatch, or the model could not
load or run), 2 when the tests could not be read or the provider cannot run here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from onnxstudy.errors import ProviderUnavailable
from onnxstudy.runtime import PROVIDERS
from onnxstudy.zoo import DEFAULT_TOLERANCE, PASS, BrokenTestData, ZooValidation, validate_model

EXIT_PASS, EXIT_FAIL, EXIT_UNUSABLE = 0, 1, 2


def non_negative(text: str) -> float:
    """An argparse type: a float that is 0 or more (a tolerance)."""
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"a tolerance must be 0 or more, not {text}")
    return value


def _error(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def format_validation(validation: ZooValidation) -> list[str]:
    """The lines `validate` prints: a verdict per test with its worst errors, the failing
    outputs indented below it, and a last line with the overall verdict."""
    lines = [f"model {validation.model}"]
    if not validation.tests:
        lines.append(f"verdict: {validation.status}: {validation.reason}")
        return lines
    for test in validation.tests:
        errors = [c.max_abs_err for c in test.outputs if c.max_abs_err is not None]
        relative = [c.max_rel_err for c in test.outputs if c.max_rel_err is not None]
        figures = (
            f"max abs err {_error(max(errors, default=None))}, "
            f"max rel err {_error(max(relative, default=None))}"
        )
        lines.append(
            f"{test.test}: {test.status} (inputs matched by {test.matched_by}; "
            f"{test.reason or figures})"
        )
        lines += [f"  {c.name}: {c.failure}" for c in test.outputs if not c.passed]
    passed = sum(test.status == PASS for test in validation.tests)
    tolerance = ", ".join(f"{key} {value:g}" for key, value in validation.tolerance.items())
    verdict = "pass" if validation.passed else "fail"
    lines.append(f"verdict: {verdict} ({passed}/{len(validation.tests)} tests passed; {tolerance})")
    return lines


def validate_command(args: argparse.Namespace) -> int:
    tolerance = {"rtol": args.rtol, "atol": args.atol}
    try:
        validation = validate_model(args.path, tolerance, args.provider, args.trust_npz)
    except (FileNotFoundError, BrokenTestData, ProviderUnavailable) as error:
        print(f"onnxstudy validate: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    print("\n".join(format_validation(validation)))
    return EXIT_PASS if validation.passed else EXIT_FAIL


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m onnxstudy")
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser(
        "validate",
        help="run a Model Zoo model on its test data and compare with the expected outputs",
        description="Run the model in DIR on each test_data_set_N/ and test_data_N.npz and "
        "compare every output with the expected one: floats within atol + rtol*|expected|, "
        "integers, bools and strings exactly.",
    )
    validate.add_argument("path", metavar="DIR", help="zoo directory, or a .onnx file in one")
    validate.add_argument(
        "--rtol",
        type=non_negative,
        default=DEFAULT_TOLERANCE["rtol"],
        help="relative tolerance (default: %(default)g)",
    )
    validate.add_argument(
        "--atol",
        type=non_negative,
        default=DEFAULT_TOLERANCE["atol"],
        help="absolute tolerance (default: %(default)g)",
    )
    validate.add_argument(
        "--provider",
        choices=list(PROVIDERS),
        default="cpu",
        help="ONNX Runtime execution provider (default: %(default)s)",
    )
    validate.add_argument(
        "--trust-npz",
        action="store_true",
        help="load pickled object arrays from test_data_N.npz (unpickling runs code: only "
        "for files from a source you trust)",
    )
    validate.set_defaults(run=validate_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in `argv` (default: sys.argv[1:]) and return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.run(args)
