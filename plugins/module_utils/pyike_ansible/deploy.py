# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pyike.ipsec.engine's work: install the engine the module carries, and run pyiked as a service.

Order of a run: check the interpreter's dependencies -> plan files (engine tree, wrappers, unit)
-> look at the service -> (outside check mode) write files, start/restart/stop, and only then
remove older engine versions, so that a daemon is never left without its files.
"""

from __future__ import annotations

import os
import sys

from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible import install, supervisor, wheel
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.bundle import (
    ENGINE_IMPORT_ERROR,
    ENGINE_PACKAGE,
)
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.client import is_answering
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.common import (
    DEFAULT_CONTROL_SOCKET,
    is_yaml_path,
    missing_dependencies_message,
    os_family,
    probe_dependencies,
    write_atomic,
)
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.configfile import (
    control_socket_for_file,
)
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.payload import (
    PayloadError,
    module_source,
    package_files,
)
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.service import (
    ServiceError,
    Supervised,
    Systemd,
    systemd_is_pid1,
)


class EngineTaskError(Exception):
    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


def _parse_document():
    from ansible_collections.pyike.ipsec.plugins.module_utils.pyike.config import parse_document

    return parse_document


class EngineTask:
    """One run of the module: `params` as the module received them; `run(argv)` is run_command."""

    def __init__(self, params, check_mode, run, warn, python=None, unit_path=install.UNIT_PATH):
        self.params = params
        self.unit_path = unit_path
        self.check_mode = check_mode
        self.run = run
        self.warn = warn
        self.python = python or sys.executable
        self.state = params["state"]
        self.version = params["version"]
        self.install_root = params["install_root"]
        self.bin_dir = params["bin_dir"]
        self.config_path = params["config_path"]
        self.version_dir = os.path.join(self.install_root, self.version)
        self.site_dir = None  # <version_dir>/site when a cryptography wheel is used (wheel.py)
        self.result = {
            "changed": False,
            "version": self.version,
            "install_dir": self.version_dir,
            "python": self.python,
            "config_path": self.config_path,
            "restarted": False,
        }

    # --- checks ------------------------------------------------------------------------------
    def check_dependencies(self):
        found = probe_dependencies()
        self.result["dependencies"] = found
        need_yaml = self.state != "absent" and is_yaml_path(self.config_path)
        message = missing_dependencies_message(found, os_family(), need_yaml=need_yaml)
        if message:
            if need_yaml and found.get("yaml") is None:
                message += " (PyYAML because config_path %s is YAML; a .json config_path needs no PyYAML)" % (
                    self.config_path
                )
            raise EngineTaskError(message, dependencies=found)
        if ENGINE_IMPORT_ERROR:
            last = ENGINE_IMPORT_ERROR.strip().splitlines()[-1]
            raise EngineTaskError(
                "the pyike engine does not import under %s: %s" % (self.python, last),
                traceback=ENGINE_IMPORT_ERROR,
            )

    def newer_cryptography(self, engine_files):
        """{path under the site directory: bytes} of the cryptography wheel the daemon will use, or {};
        ``engine_files`` must import with it.

        The wheel is used when it works under this interpreter and is newer than the distribution's
        cryptography; otherwise the distribution's stays and a warning says why. A path that is not a
        root-owned file fails the task. Check mode reads the wheel but does not run it.
        """
        distro = self.result["dependencies"].get("cryptography")
        chosen = {"version": distro, "source": "distribution", "slow_aead": wheel.is_slow(distro)}
        self.result["cryptography"] = chosen
        path = self.params.get("cryptography_wheel")
        if not path:
            return {}
        try:
            wheel.check_file(path)
        except wheel.WheelError as exc:
            raise EngineTaskError("cryptography_wheel %s" % exc) from None
        try:
            version, files = wheel.read_wheel(path)
            if wheel.version_tuple(version) <= wheel.version_tuple(distro):
                self.warn("cryptography_wheel %s: its cryptography %s is not newer than the installed %s, "
                          "which the engine keeps using" % (path, version, distro))  # fmt: skip
                return {}
            imported = version if self.check_mode else self._probe(path, files, engine_files)
            if imported != version:
                raise wheel.WheelError(
                    "%s: imports as cryptography %s, its file name says %s" % (path, imported, version)
                )
        except wheel.WheelError as exc:
            self.warn("cryptography_wheel %s; the engine uses the installed cryptography %s" % (exc, distro))
            return {}
        self.site_dir = os.path.join(self.version_dir, wheel.SITE_DIR)
        if self.check_mode:
            chosen["tested"] = False
        chosen.update(version=imported, source="wheel", path=self.site_dir, slow_aead=wheel.is_slow(imported))
        return files

    def _probe(self, path, files, engine_files):
        """Unpack the wheel under the install root (the daemon's filesystem, which may be mounted
        differently from /tmp) and import it with this interpreter."""
        if not os.path.isdir(self.install_root):
            install.ensure_dir(self.install_root, install.DIR_MODE)
        return wheel.probe(self.run, self.python, path, files, self.install_root, engine_files)

    # --- the service -------------------------------------------------------------------------
    def service(self, engine_digest):
        manager = self.params["service_manager"]
        if manager == "auto":
            manager = "systemd" if systemd_is_pid1() else "supervisor"
        self.result["service_manager"] = manager
        socket_path = self.control_socket()
        if manager == "systemd":
            return Systemd(self.run, socket_path)
        return Supervised(
            self.run,
            self.python,
            self.version_dir,
            self.config_path,
            self.params["pid_file"],
            self.params["log_file"],
            socket_path,
            engine_digest,
            self.site_dir,
        )

    def control_socket(self):
        if "control_socket" not in self.result:
            if self.state == "absent" or ENGINE_IMPORT_ERROR:
                self.result["control_socket"] = DEFAULT_CONTROL_SOCKET
            else:
                self.result["control_socket"] = control_socket_for_file(self.config_path, _parse_document())
        return self.result["control_socket"]

    # --- run ---------------------------------------------------------------------------------
    def execute(self):
        try:
            install.check_version(self.version)
        except install.InstallError as exc:
            raise EngineTaskError(str(exc)) from None
        if self.state == "absent":
            return self.remove()
        self.check_dependencies()
        try:
            engine_files = package_files(ENGINE_PACKAGE)
            supervisor_source = module_source(supervisor)
        except PayloadError as exc:
            raise EngineTaskError("cannot read the engine out of the module's payload: %s" % exc) from None
        site_files = self.newer_cryptography(engine_files)
        engine_files.update((wheel.SITE_DIR + "/" + path, content) for path, content in site_files.items())
        tree, engine_digest = install.desired_tree(
            engine_files, supervisor_source, self.version, self.python, self.version_dir
        )
        self.result["engine_digest"] = engine_digest
        service = self.service(engine_digest)
        try:
            return self._install_and_run(tree, engine_digest, service)
        except (install.InstallError, ServiceError) as exc:
            raise EngineTaskError(str(exc), **self._public_result()) from None
        except OSError as exc:
            raise EngineTaskError(
                "%s: %s" % (exc.filename or "install", exc.strerror or exc), **self._public_result()
            ) from None

    def _public_result(self):
        return {key: value for key, value in self.result.items() if key != "changed"}

    def _install_and_run(self, tree, engine_digest, service):
        result = self.result
        tree_changes = install.plan_tree(self.version_dir, tree)
        wrappers = {}
        for kind, name in (("daemon", "pyiked"), ("ctl", "pyikectl")):
            path = os.path.join(self.bin_dir, name)
            content = install.wrapper_text(
                kind,
                self.python,
                self.version_dir,
                self.config_path,
                self.version,
                engine_digest,
                self.site_dir,
            )
            state = install.plan_owned_file(path, content, install.EXEC_MODE)
            if state:
                wrappers[path] = content
        unit_content = None
        if service.name == "systemd":
            unit_content = install.unit_text(self.bin_dir, self.config_path, self.version)
            if not install.plan_owned_file(self.unit_path, unit_content, install.FILE_MODE):
                unit_content = None
        old_versions = {v: d for v, d in install.our_versions(self.install_root).items() if v != self.version}
        status = service.status()
        before = {
            "versions": sorted(install.our_versions(self.install_root)),
            "running": status["running"],
            "engine_digest": status.get("engine_digest"),
        }
        installed = bool(tree_changes or wrappers or unit_content)
        result["installed"] = installed
        result["files_changed"] = len(tree_changes) + len(wrappers) + (1 if unit_content else 0)
        result["removed_versions"] = sorted(old_versions)
        if not self.check_mode:
            if not os.path.isdir(self.install_root):
                install.ensure_dir(self.install_root, install.DIR_MODE)
            if tree_changes:
                install.apply_tree(self.version_dir, tree, tree_changes)
            for path, content in wrappers.items():
                if not os.path.isdir(self.bin_dir):
                    install.ensure_dir(self.bin_dir, install.DIR_MODE)
                write_atomic(path, content, install.EXEC_MODE)
            if unit_content:
                write_atomic(self.unit_path, unit_content, install.FILE_MODE)
                service.daemon_reload()
        running = status["running"]
        stale = running and (status.get("engine_digest") != engine_digest or bool(unit_content))
        config_exists = os.path.exists(self.config_path)
        result["config_exists"] = config_exists
        timeout = self.params["start_timeout"]
        action = None
        if self.state == "started":
            if not running:
                if config_exists:
                    action = "start"
                else:
                    self.warn(
                        "pyiked was installed but not started: %s does not exist yet; write it with "
                        "pyike.ipsec.config, then run pyike.ipsec.engine with state=started again"
                        % self.config_path
                    )
            elif stale:
                action = "restart"
        elif self.state == "present" and stale:
            action = "restart"
        elif self.state == "stopped" and running:
            action = "stop"
        if action == "start" and not self.check_mode and is_answering(self.control_socket(), timeout=2.0):
            raise EngineTaskError(
                "a pyike daemon that this module did not start answers on %s; stop it first"
                % self.control_socket()
            )
        enable_change = False
        if service.name == "systemd":
            wanted = self.state == "started"
            if wanted and not status.get("enabled") and (config_exists or running):
                enable_change = True
                if not self.check_mode:
                    service.enable()
            elif self.state == "stopped" and status.get("enabled"):
                enable_change = True
                if not self.check_mode:
                    service.disable()
        if action and not self.check_mode:
            getattr(service, action)(timeout)
        result["restarted"] = action == "restart"
        result["started"] = action == "start"
        result["stopped"] = action == "stop"
        if not self.check_mode:
            for directory in old_versions.values():
                install.remove_tree(directory)
            after_status = service.status()
        else:
            after_status = {
                "running": (running or action == "start") and action != "stop",
                "pid": status.get("pid") if action is None else None,
            }
        result["running"] = after_status["running"]
        result["pid"] = after_status.get("pid")
        result["changed"] = bool(installed or old_versions or action or enable_change)
        result["diff"] = {
            "before": before,
            "after": {
                "versions": [self.version],
                "running": result["running"],
                "engine_digest": engine_digest if result["running"] else None,
            },
        }
        result["msg"] = self._message(action, installed)
        return result

    def _message(self, action, installed):
        words = []
        if installed:
            words.append("installed engine %s in %s" % (self.version, self.version_dir))
        if action:
            words.append({"start": "started", "restart": "restarted", "stop": "stopped"}[action] + " pyiked")
        if not words:
            words.append(
                "engine %s is installed%s"
                % (self.version, ", pyiked runs" if self.result.get("running") else "")
            )
        text = "; ".join(words)
        return ("check mode: would have " + text) if self.check_mode and (installed or action) else text

    # --- absent ------------------------------------------------------------------------------
    def remove(self):
        result = self.result
        service = self.service("")
        manager = result["service_manager"]
        changed = False
        try:
            status = service.status()
            if status["running"]:
                changed = True
                if not self.check_mode:
                    service.stop(self.params["start_timeout"])
            paths = [os.path.join(self.bin_dir, name) for name in ("pyiked", "pyikectl")]
            if manager == "systemd":
                paths.append(self.unit_path)
            for path in paths:
                if os.path.exists(path) and install.is_ours(path):
                    changed = True
                    if not self.check_mode:
                        if path == self.unit_path:
                            service.disable()
                        os.unlink(path)
                        if path == self.unit_path:
                            service.daemon_reload()
            versions = install.our_versions(self.install_root)
            if versions:
                changed = True
                if not self.check_mode:
                    for directory in versions.values():
                        install.remove_tree(directory)
                    install.remove_if_empty(self.install_root)
        except (ServiceError, OSError) as exc:
            raise EngineTaskError("removing the engine failed: %s" % exc) from None
        result["removed_versions"] = sorted(versions)
        result["running"] = False
        result["pid"] = None
        result["changed"] = changed
        result["msg"] = "removed the engine (the configuration in %s stays)" % os.path.dirname(
            self.config_path
        )
        if not changed:
            result["msg"] = "the engine is not installed"
        return result
