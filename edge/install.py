"""Install moodmic as an always-on systemd service on Raspberry Pi OS / Debian, in six steps, each printed
before it runs and each idempotent (a second run changes nothing). One: apt-get install libportaudio2
python3-venv (live system only). Two: a venv at /opt/moodmic/venv (PEP 668) with moodmic[edge] from
--source, or with --no-venv a launcher there that runs this Python's moodmic. Three: the system user
moodmic in group audio (/etc/sysusers.d/moodmic.conf, applied by systemd-sysusers). Four:
/etc/moodmic/config.yaml, 0640 root:moodmic, never overwritten. Five: /etc/systemd/system/moodmic.service
and /etc/systemd/user/moodmic-user.service. Six: systemctl daemon-reload && systemctl enable --now
moodmic.service (live system only). --root DIR writes every file under DIR (a mounted SD card, a test's
temp dir) and runs nothing on this system; --dry-run prints the steps and changes nothing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from . import __version__
from .errors import EXIT_SOFTWARE, MoodmicError, NotRoot, UnsupportedPlatform, UsageError

HELP = "install the always-on systemd service (Raspberry Pi OS / Debian)"

UNIT_NAME = "moodmic.service"  # the one name: the file written and the unit systemctl enables
USER_UNIT_NAME = "moodmic-user.service"
DEFAULT_USER = "moodmic"
VENV = PurePosixPath("/opt/moodmic/venv")
PROGRAM = VENV / "bin" / "moodmic"
CONFIG_DIR = PurePosixPath("/etc/moodmic")
CONFIG = CONFIG_DIR / "config.yaml"
SYSUSERS = PurePosixPath("/etc/sysusers.d/moodmic.conf")
SYSTEM_UNIT_DIR = PurePosixPath("/etc/systemd/system")
USER_UNIT_DIR = PurePosixPath("/etc/systemd/user")  # offered to every user, enabled by none
APT_PACKAGES = ("libportaudio2", "python3-venv")
RUN_SYSTEMD = Path("/run/systemd/system")  # exists only when systemd is PID 1
HIDDEN_BY_PROTECT_HOME = ("/home", "/root", "/run/user")
LAUNCHER_MARK = "# moodmic launcher written by `moodmic install-service --no-venv`"
MIN_PYTHON = (3, 10)


class StepFailed(MoodmicError):
    """A tool the installer drives (apt-get, pip, systemd-sysusers, systemctl) failed."""

    exit_code = EXIT_SOFTWARE


# --- the units: rendered here, so an installed wheel carries them; systemd/*.service are this text ----------

_SYSTEM_UNIT = """\
# moodmic: speech emotion recognition on a microphone, published to MQTT. The headless Pi's system service.
# Written by `moodmic install-service` (edge/install.py; the repository's systemd/moodmic.service is the
# same text). Put local changes in a drop-in (`systemctl edit moodmic`): an upgrade rewrites this file.

[Unit]
Description=moodmic speech emotion recognition (microphone -> MQTT)
Wants=network-online.target
After=network-online.target sound.target
# A fault that persists (a microphone that stays dead: exit 75) is retried 10 times in 10 minutes, then
# the unit stays failed until `systemctl restart moodmic`.
StartLimitIntervalSec=600
StartLimitBurst=10

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
Environment=PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# READY=1 comes once the model is loaded and the first audio arrived (slow on a Pi Zero).
TimeoutStartSec=120
# WATCHDOG=1 comes every WATCHDOG_USEC/2 while windows are consumed, never while the pipeline is stalled.
WatchdogSec=30
# SIGTERM: spool what is undelivered, publish offline, exit 0 (aims at 2 s).
TimeoutStopSec=15
Restart=on-failure
RestartSec=5
# 78 = bad config, credentials or model: a restart cannot fix that, so no restart loop (75 is restarted).
RestartPreventExitStatus=78

User={user}
Group={user}
# audio: /dev/snd, for ALSA directly (the headless case). A microphone that a desktop session's
# PipeWire/PulseAudio holds is shared through moodmic-user.service instead.
SupplementaryGroups=audio
# $STATE_DIRECTORY = /var/lib/moodmic: the spool of undelivered results, the one writable place.
StateDirectory=moodmic
StateDirectoryMode=0700
# $CONFIGURATION_DIRECTORY = /etc/moodmic: config.yaml and password files, 0640 root:{user}; read-only here.
ConfigurationDirectory=moodmic
ConfigurationDirectoryMode=0750
UMask=0077

# Hardening: `systemd-analyze security moodmic` rates it 1.6 (a test keeps it under 4.0).
CapabilityBoundingSet=
AmbientCapabilities=
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateMounts=yes
# Not PrivateDevices=yes, which hides /dev/snd: only ALSA devices (and /dev/null and the like) are allowed.
DevicePolicy=closed
DeviceAllow=char-alsa rw
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
# Not ProcSubset=pid: /proc/cpuinfo is read at start-up.
# MQTT over TCP; AF_UNIX for the journal, sd_notify and name lookups. No AF_NETLINK: nothing needs it.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
# Not MemoryDenyWriteExecute=yes: the capture callback is a cffi callback (sounddevice), which needs
# writable+executable memory ("MemoryError: Cannot allocate write+execute memory for ffi.callback()").
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
# Not ~@resources: PortAudio starts its thread with an explicit policy (sched_setscheduler), numpy mbind()s.
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"""

_USER_UNIT = """\
# moodmic as a user service: for a microphone that a desktop session's PipeWire or PulseAudio holds and
# shares (a system service cannot reach the session's sound server, and the sound server keeps the ALSA
# device busy). Written by `moodmic install-service` (edge/install.py; the repository's
# systemd/moodmic-user.service is the same text); enabled by nobody until a user runs
#   systemctl --user enable --now moodmic-user        (and `loginctl enable-linger` to start at boot)
# Disable the system service first (`sudo systemctl disable --now moodmic`): one process per microphone.

[Unit]
Description=moodmic speech emotion recognition (microphone -> MQTT), in the user session
After=pipewire.service pipewire-pulse.service wireplumber.service pulseaudio.service network-online.target
StartLimitIntervalSec=600
StartLimitBurst=10

[Service]
Type=notify
NotifyAccess=main
# %E = ~/.config: the user's own config (0600; a copy of /etc/moodmic/config.yaml is a good start).
ExecStart={exec_start}
Environment=PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
TimeoutStartSec=120
WatchdogSec=30
TimeoutStopSec=15
Restart=on-failure
RestartSec=5
RestartPreventExitStatus=78
# $STATE_DIRECTORY = ~/.local/state/moodmic (the spool); $CONFIGURATION_DIRECTORY = ~/.config/moodmic.
StateDirectory=moodmic
StateDirectoryMode=0700
ConfigurationDirectory=moodmic
ConfigurationDirectoryMode=0700
UMask=0077

# Only hardening that works without privileges in a user manager (seccomp, no new privileges): the
# mount-namespace options (ProtectSystem=, ProtectHome=, PrivateTmp=) need user namespaces there.
NoNewPrivileges=yes
LockPersonality=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM

[Install]
WantedBy=default.target
"""


def render_system_unit(user: str = DEFAULT_USER) -> str:
    """The system unit for service user `user` (ExecStart via shlex.join, so a path is quoted right)."""
    exec_start = shlex.join([str(PROGRAM), "run", "--config", str(CONFIG)])
    return _SYSTEM_UNIT.format(exec_start=exec_start, user=_checked_user(user))


def render_user_unit() -> str:
    """The user-manager unit: same program, the user's ~/.config/moodmic/config.yaml (%E)."""
    return _USER_UNIT.format(exec_start=shlex.join([str(PROGRAM), "run", "--config", "%E/moodmic/config.yaml"]))


def render_sysusers(user: str = DEFAULT_USER) -> str:
    """sysusers.d(5) lines: the system user (no login, home = the state directory) and its audio membership."""
    user = _checked_user(user)
    return (
        "# moodmic's service user; audio gives it /dev/snd. Written by `moodmic install-service`.\n"
        f'u {user} - "moodmic speech emotion service" /var/lib/moodmic -\n'
        f"m {user} audio\n"
    )


def _checked_user(user: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,30}", user) or user == "root":
        raise UsageError(f"--user {user!r}: give a system user name like 'moodmic' (lower case, not root)")
    return user


# --- the config -----------------------------------------------------------------------------------------------

def config_template(explicit: str | None = None) -> tuple[str, str]:
    """(text, where it came from): --config FILE, else every key with its default (edge.config_yaml)."""
    from .config import load_settings
    from .config_yaml import render

    if explicit:
        load_settings(explicit)  # a bad file is a ConfigError naming the key, before anything is written
        return Path(explicit).read_text(encoding="utf-8"), explicit
    return render(), "the built-in defaults (edge.config)"


# --- where moodmic comes from -----------------------------------------------------------------------------------

def default_source() -> str:
    """This moodmic's own source: its checkout, the file or VCS it was installed from, else the index."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "edge" / "__init__.py").is_file():
        return str(checkout)
    try:
        info = json.loads(importlib.metadata.distribution("moodmic").read_text("direct_url.json") or "{}")
    except (importlib.metadata.PackageNotFoundError, ValueError):
        info = {}
    url = info.get("url", "")
    if "vcs_info" in info:
        commit = info["vcs_info"].get("commit_id")
        return f"moodmic @ {info['vcs_info']['vcs']}+{url}" + (f"@{commit}" if commit else "")
    if url.startswith("file://") and Path(unquote(urlparse(url).path)).exists():
        return unquote(urlparse(url).path)
    return f"moodmic=={__version__}"


def pip_requirement(source: str) -> str:
    """`source` as a pip requirement with the edge extra: a path, `moodmic[==version]`, or verbatim."""
    if Path(source).exists():
        return f"{Path(source).resolve()}[edge]"
    match = re.fullmatch(r"moodmic(\s*@.*|\s*[=<>!~].*)?", source.strip())
    if match:
        return "moodmic[edge]" + (match.group(1) or "")
    return source


# --- the installer ----------------------------------------------------------------------------------------------

def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default="/", metavar="DIR",
                        help="install under this directory, e.g. a mounted SD card or a test's temp dir "
                             "(default: /, the live system)")
    parser.add_argument("--user", default=DEFAULT_USER, metavar="NAME",
                        help=f"the service's system user, created in group audio (default: {DEFAULT_USER})")
    parser.add_argument("--source", metavar="PATH_OR_SPEC",
                        help="what pip installs into the venv: a checkout, a wheel, or a requirement "
                             "(default: this moodmic's own source: its checkout, or the wheel it was installed from; "
                             "moodmic is not on a package index)")
    parser.add_argument("--dry-run", action="store_true", help="print every step without doing it")
    parser.add_argument("--no-venv", action="store_true",
                        help=f"no venv: write a launcher at {PROGRAM} that runs the moodmic this Python has")
    parser.epilog = ("--config FILE installs FILE as /etc/moodmic/config.yaml (if none is there yet) instead of "
                     "the documented defaults.")


def cmd_install(args: argparse.Namespace) -> int:
    installer = Installer(
        root=Path(args.root), user=args.user, source=args.source, dry_run=args.dry_run,
        no_venv=args.no_venv, config=getattr(args, "config", None),
    )
    installer.run()
    return 0


def _platform() -> str:
    return sys.platform


def _python_version() -> tuple[int, int]:
    return sys.version_info[:2]


def _euid() -> int:
    return os.geteuid()


class Installer:
    def __init__(self, root: Path, user: str = DEFAULT_USER, source: str | None = None, dry_run: bool = False,
                 no_venv: bool = False, config: str | None = None) -> None:
        self.root = Path(os.path.abspath(root))
        self.live = self.root == Path("/")
        self.user = _checked_user(user)
        self.source = source
        self.dry_run = dry_run
        self.no_venv = no_venv
        self.config = config
        self.steps = 6
        self.step_no = 0

    # -- helpers --
    def path(self, p: PurePosixPath) -> Path:
        return self.root / p.relative_to("/")

    def step(self, title: str) -> None:
        self.step_no += 1
        print(f"[{self.step_no}/{self.steps}] {title}", flush=True)

    def say(self, text: str) -> None:
        print(f"  {text}", flush=True)

    def run_tool(self, cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
        self.say(("would run: $ " if self.dry_run else "$ ") + shlex.join(cmd))
        if self.dry_run:
            return ""
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, **(env or {})})
        except OSError as exc:
            raise StepFailed(f"{what}: cannot run {cmd[0]} ({exc.strerror})") from exc
        for line in proc.stdout.splitlines():
            self.say(f"| {line}")
        if proc.returncode != 0:
            raise StepFailed(f"{what}: `{shlex.join(cmd)}` failed with exit {proc.returncode} (its output is above)")
        return proc.stdout

    def write(self, path: Path, text: str, mode: int, *, overwrite: bool = True, gid: int | None = None) -> str:
        """Write `text` unless it is there already; 'written', 'updated', 'unchanged' or 'kept'."""
        exists = path.exists() or path.is_symlink()
        if exists and not overwrite:
            return "kept"
        if exists and path.is_file() and path.read_text(encoding="utf-8", errors="replace") == text:
            if not self.dry_run:
                os.chmod(path, mode)
            return "unchanged"
        if self.dry_run:
            return "would update" if exists else "would write"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.moodmic-tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), mode)  # not reduced by the umask
            if gid is not None and _euid() == 0:
                os.fchown(f.fileno(), 0, gid)
            f.write(text)
        if not overwrite:
            os.link(tmp, path)  # fails if a config appeared meanwhile: never overwrite one
            tmp.unlink()
        else:
            os.replace(tmp, path)
        return "updated" if exists else "written"

    def group_id(self, name: str) -> int | None:
        """The gid of `name` in the target root's /etc/group (None before it exists, e.g. in a dry run)."""
        if self.live:
            import grp  # Unix only: edge.cli imports this module on every platform

            try:
                return grp.getgrnam(name).gr_gid
            except KeyError:
                return None
        group_file = self.path(PurePosixPath("/etc/group"))
        if group_file.is_file():
            for line in group_file.read_text(encoding="utf-8").splitlines():
                fields = line.split(":")
                if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
                    return int(fields[2])
        return None

    # -- checks --
    def check_platform(self) -> None:
        platform = _platform()
        if not platform.startswith("linux"):
            raise UnsupportedPlatform(f"install-service needs Linux with systemd (Raspberry Pi OS, Debian), not "
                                      f"{platform}; run `moodmic run` by hand there instead")
        version = _python_version()
        if tuple(version) < MIN_PYTHON:
            raise UnsupportedPlatform(f"Python {version[0]}.{version[1]} is too old: moodmic needs "
                                      f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]}+ (Raspberry Pi OS bookworm or newer)")
        if self.live:
            if not RUN_SYSTEMD.is_dir():
                raise UnsupportedPlatform(f"systemd is not running here ({RUN_SYSTEMD} is missing): the service "
                                          "needs systemd as PID 1; run `moodmic run` another way, or install into "
                                          "an image with --root DIR")
            if _euid() != 0 and not self.dry_run:
                raise NotRoot("installing to / needs root: run it with sudo (or add --dry-run to see the steps)")
        if shutil.which("systemd-sysusers") is None:
            raise UnsupportedPlatform("systemd-sysusers is missing: install systemd (apt-get install systemd)")

    def base_python(self) -> str:
        """The interpreter the venv is made from: the OS's python3 on the live system, else this one's base."""
        if self.live and Path("/usr/bin/python3").exists():
            python = "/usr/bin/python3"
        else:
            python = getattr(sys, "_base_executable", None) or sys.executable
        out = subprocess.run([python, "-c", "import sys; print('%d %d' % sys.version_info[:2])"],
                             capture_output=True, text=True)
        version = tuple(int(v) for v in out.stdout.split()) if out.returncode == 0 else (0, 0)
        if version < MIN_PYTHON:
            raise UnsupportedPlatform(f"{python} is Python {'.'.join(map(str, version))}: moodmic needs "
                                      f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]}+ (Raspberry Pi OS bookworm or newer)")
        return python

    # -- steps --
    def run(self) -> None:
        self.check_platform()
        where = "the live system" if self.live else f"{self.root} (files only; nothing runs on this system)"
        print(f"moodmic install-service{' --dry-run' if self.dry_run else ''}: into {where}, "
              f"service user {self.user}", flush=True)
        old_umask = os.umask(0o022)  # the venv must be readable by the service user whatever root's umask is
        try:
            self.packages()
            self.program()
            self.service_user()
            self.install_config()
            self.units()
            self.enable()
        finally:
            os.umask(old_umask)

    def packages(self) -> None:
        needed = APT_PACKAGES if not self.no_venv else tuple(p for p in APT_PACKAGES if p != "python3-venv")
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *needed]
        self.step("system packages: " + ", ".join(needed))
        if not self.live:
            self.say(f"skipped under --root; on the device: {shlex.join(cmd)}")
            return
        if shutil.which("dpkg-query"):
            status = subprocess.run(["dpkg-query", "-W", "-f=${Status}\\n", *needed], capture_output=True, text=True)
            if status.returncode == 0 and status.stdout.count("install ok installed") == len(needed):
                self.say("already installed")
                return
        if shutil.which("apt-get") is None:
            raise UnsupportedPlatform(f"apt-get is missing (not Debian/Raspberry Pi OS?): install {' '.join(needed)} "
                                      "with this system's package manager, then run this again")
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        try:
            self.run_tool(cmd, "system packages", env)
        except StepFailed:  # a fresh image has no package lists yet
            self.run_tool(["apt-get", "update"], "system packages", env)
            self.run_tool(cmd, "system packages", env)

    def program(self) -> None:
        program = self.path(PROGRAM)
        if self.no_venv:
            self.step(f"program: launcher {program} (--no-venv)")
            return self._launcher(program)
        venv = self.path(VENV)
        self.step(f"program: venv {venv} with moodmic[edge]")
        python = self.base_python()
        if (venv / "bin" / "python").exists():
            self.say(f"venv exists: {venv}")
        else:
            self.run_tool([python, "-m", "venv", str(venv)], "venv")
        requirement = pip_requirement(self.source or default_source())
        self.run_tool([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                       requirement], "pip install")
        if not self.dry_run and not program.exists():
            raise StepFailed(f"pip installed {requirement} but {program} is missing: is --source a moodmic package?")

    def _launcher(self, program: Path) -> None:
        script = Path(sys.executable).parent / "moodmic"
        target = [str(script)] if script.is_file() else [sys.executable, "-m", "edge.cli"]
        if self.live and any(target[0] == d or target[0].startswith(d + "/") for d in HIDDEN_BY_PROTECT_HOME):
            raise UnsupportedPlatform(f"--no-venv: {target[0]} is under a home directory, which the service's "
                                      "ProtectHome=yes hides; drop --no-venv to install a venv in /opt/moodmic")
        if (program.exists() or program.is_symlink()) and LAUNCHER_MARK not in _head(program):
            self.say(f"kept: {program} is a real install, not a launcher")
            return
        text = f"#!/bin/sh\n{LAUNCHER_MARK}: the service runs this Python's moodmic.\nexec {shlex.join(target)} \"$@\"\n"
        self.say(f"{self.write(program, text, 0o755)}: runs {shlex.join(target)}")

    def service_user(self) -> None:
        conf = self.path(SYSUSERS)
        self.step(f"service user: {self.user} in group audio ({conf})")
        self.say(f"{self.write(conf, render_sysusers(self.user), 0o644)}: {conf}")
        cmd = ["systemd-sysusers", str(conf)] if self.live else ["systemd-sysusers", f"--root={self.root}", str(conf)]
        self.run_tool(cmd, "service user")

    def install_config(self) -> None:
        config_dir, config = self.path(CONFIG_DIR), self.path(CONFIG)
        self.step(f"config: {config} (0640 root:{self.user}, never overwritten)")
        gid = self.group_id(self.user)
        if self.dry_run:
            self.say(f"would create {config_dir} 0750 root:{self.user}" if not config_dir.is_dir() else
                     f"would set {config_dir} to 0750 root:{self.user}")
        else:
            config_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
            os.chmod(config_dir, 0o750)
            if gid is not None and _euid() == 0:
                os.chown(config_dir, 0, gid)
        if config.exists():
            mode = config.stat().st_mode & 0o777
            self.say(f"kept: {config} exists (mode {mode:04o})")
            if mode & 0o007:
                self.say(f"warning: others can access {config}; moodmic refuses a config with secrets like that: "
                         f"chmod 0640 {config}")
            return
        text, origin = config_template(self.config)
        self.say(f"{self.write(config, text, 0o640, overwrite=False, gid=gid)} from {origin}")
        if gid is None or _euid() != 0:
            self.say(f"note: group {self.user} not applied ({'dry run' if self.dry_run else 'not root'})")

    def units(self) -> None:
        system_unit = self.path(SYSTEM_UNIT_DIR / UNIT_NAME)
        user_unit = self.path(USER_UNIT_DIR / USER_UNIT_NAME)
        self.step(f"units: {system_unit}, {user_unit}")
        self.say(f"{self.write(system_unit, render_system_unit(self.user), 0o644)}: {system_unit}")
        self.say(f"{self.write(user_unit, render_user_unit(), 0o644)}: {user_unit} (for PipeWire/PulseAudio sharing)")

    def enable(self) -> None:
        command = f"systemctl daemon-reload && systemctl enable --now {UNIT_NAME}"
        self.step(f"start: {command}")
        if not self.live:
            self.say(f"next step, as root on the device: {command}")
            return
        was_active = (not self.dry_run and subprocess.run(["systemctl", "is-active", "--quiet", UNIT_NAME]).returncode == 0)
        self.run_tool(["systemctl", "daemon-reload"], "start")
        self.run_tool(["systemctl", "enable", "--now", UNIT_NAME], "start")
        if was_active:  # an upgrade: the running process still has the old code
            self.run_tool(["systemctl", "restart", UNIT_NAME], "start")
        self.say(f"logs: journalctl -u {UNIT_NAME} -f; state: systemctl status {UNIT_NAME}")


def _head(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(512)
    except OSError:
        return ""


def write_repo_units(directory: str | os.PathLike) -> None:
    """Regenerate the repository's systemd/*.service from the templates above."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / UNIT_NAME).write_text(render_system_unit(), encoding="utf-8")
    (out / USER_UNIT_NAME).write_text(render_user_unit(), encoding="utf-8")


if __name__ == "__main__":  # python -m edge.install systemd/   (after editing a template)
    write_repo_units(sys.argv[1] if len(sys.argv) > 1 else "systemd")
