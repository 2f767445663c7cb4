"""The `ppfr` command line.

Each command lives beside the code it drives and is imported only when it is used, so that
`ppfr verify` does not pay for torch and `ppfr --help` stays quick. Every command runs through one error
path (ppfr.failures): a failure is one line naming the file or option and the fix, never a traceback
unless --debug is given; and a broken config breaks no --help, only the commands that run.
"""
from __future__ import annotations

import importlib
import importlib.util

import click

from ppfr import config, failures

# command name -> "module:attribute" of a click.Command
COMMANDS = {
    "capture": "ppfr.capture.cli:capture",
    "embed": "ppfr.embed.cli:embed",
    "train-mpc": "ppfr.models.cli:train_mpc",
    "recognize": "ppfr.recognition.cli:recognize",
    "demo": "ppfr.demo.cli:demo",
    "enroll": "ppfr.gallery.cli:enroll",
    "identify": "ppfr.gallery.cli:identify",
    "verify": "ppfr.gallery.cli:verify",
    "remove": "ppfr.gallery.cli:remove",
    "web": "ppfr.web.cli:web",
    "certs": "ppfr.net.cli:certs",
    "server": "ppfr.net.cli:server",
    "dealer": "ppfr.net.cli:dealer",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(name for name in COMMANDS if self._available(name))

    def get_command(self, ctx, name):
        if name not in COMMANDS or not self._available(name):
            return None
        module, attr = COMMANDS[name].split(":")
        with config.lenient():   # a command's defaults come from the config: a broken one must not break --help
            command = getattr(importlib.import_module(module), attr)
        return command

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BaseException as e:  # noqa: BLE001 - e.g. a default read from a broken config while parsing
            failures.fail(e, ctx)

    @staticmethod
    def _available(name):
        with config.lenient():   # find_spec imports the parent package
            return importlib.util.find_spec(COMMANDS[name].split(":")[0]) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ppfr")
@click.option("--debug", is_flag=True, envvar="PPFR_DEBUG",
              help="Show the full traceback of a failure instead of its one-line summary.")
def main(debug):
    """Privacy-preserving face recognition.

    The client detects, aligns and embeds faces with dlib, then splits every 128-d embedding into two
    additive secret shares, one for each of two non-colluding servers. The servers train and run a
    softmax classifier, or match against an enrolled gallery, without ever seeing a face or an
    embedding; only the client reconstructs the answer.
    """


if __name__ == "__main__":
    main()
