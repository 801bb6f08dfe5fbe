"""TLS by default: a real hub with certificates made in the test, mutual TLS, and the refusal
of plaintext on a non-loopback address."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import subprocess
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from tests.server.conftest import ModulePool
from tests.server.hubtest import (
    MOMA_HUB,
    HubProcess,
    Lab,
    download,
    operator_call,
    signed_manifest,
    upload,
)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca(folder: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def issue(folder: Path, name: str, ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
          *, server: bool) -> tuple[Path, Path]:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(name))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1)))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_tls_hub_serves_and_refuses_unverified_clients(tmp_path: Path, pool: ModulePool) -> None:
    ca = make_ca(tmp_path, "ca")
    hub = HubProcess(tmp_path / "hub", tls=issue(tmp_path, "hub", ca, server=True),
                     ca_cert=tmp_path / "ca.pem").start()
    try:
        with hub.channel() as chan:
            mods = hub_pb2_grpc.ModuleServiceStub(chan)
            ops = hub_pb2_grpc.OperatorServiceStub(chan)
            lab = Lab.new("lab-tls")
            operator_call(ops, hub.operator, hub.hub_id, "EnrollKey",
                          hub_pb2.EnrollKeyRequest(lab_name=lab.name, public_key=lab.public_raw))
            data, card = pool.take()
            module = upload(mods, signed_manifest(lab, data, card, hub.hub_id), data).module
            operator_call(ops, hub.operator, hub.hub_id, "ApproveModule",
                          hub_pb2.ApproveModuleRequest(module_id=module.module_id))
            _, got = download(mods, module.module_id)
            assert hashlib.sha256(got).hexdigest() == module.module_id
        # a plaintext client, and a client trusting another CA, cannot talk to it
        with grpc.insecure_channel(hub.address) as plain:
            with pytest.raises(grpc.RpcError) as err:
                hub_pb2_grpc.ModuleServiceStub(plain).GetHubInfo(hub_pb2.GetHubInfoRequest(),
                                                                 timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        make_ca(tmp_path, "evil")
        creds = grpc.ssl_channel_credentials((tmp_path / "evil.pem").read_bytes())
        with grpc.secure_channel(f"localhost:{hub.port}", creds) as wrong:
            with pytest.raises(grpc.RpcError) as err:
                hub_pb2_grpc.ModuleServiceStub(wrong).GetHubInfo(hub_pb2.GetHubInfoRequest(),
                                                                 timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # the operator CLI over TLS
        listed = subprocess.run(
            [MOMA_HUB, "modules", "list", "--state", "approved", "--hub", f"localhost:{hub.port}",
             "--ca", str(tmp_path / "ca.pem"), "--operator-key",
             str(hub.operator_key_path), "--json"], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert module.module_id in listed.stdout
    finally:
        hub.stop()


def test_mutual_tls_requires_a_client_certificate(tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "ca")
    hub = HubProcess(tmp_path / "hub", tls=issue(tmp_path, "hub", ca, server=True),
                     ca_cert=tmp_path / "ca.pem", client_ca=tmp_path / "ca.pem").start()
    try:
        with hub.channel() as chan, pytest.raises(grpc.RpcError) as err:
            hub_pb2_grpc.ModuleServiceStub(chan).GetHubInfo(hub_pb2.GetHubInfoRequest(),
                                                            timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        cert, key = issue(tmp_path, "client", ca, server=False)
        with hub.channel((key.read_bytes(), cert.read_bytes())) as chan:
            info = hub_pb2_grpc.ModuleServiceStub(chan).GetHubInfo(hub_pb2.GetHubInfoRequest(),
                                                                   timeout=10)
        assert info.hub_id == hub.hub_id
    finally:
        hub.stop()


@pytest.mark.parametrize("extra", [["--insecure", "--listen", "0.0.0.0:0"], []])
def test_plaintext_only_by_choice_and_on_loopback(tmp_path: Path, extra: list[str]) -> None:
    result = subprocess.run([MOMA_HUB, "serve", "--store", str(tmp_path), "--hub-id", "x",
                             *extra], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    expected = "refusing plaintext on non-loopback" if extra else "TLS needs --tls-cert"
    assert expected in result.stderr
