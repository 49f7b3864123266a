"""The TLS port audited by sslyze, a scanner no one here wrote, against the profile docs/edge.md
says the edge follows: Mozilla's "intermediate" (sslyze checks its guideline 5.7)."""

import time
from urllib.parse import urlsplit

import pytest
from sslyze import (
    CertificateInfoExtraArgument,
    ScanCommandsExtraArguments,
    Scanner,
    ServerNetworkLocation,
    ServerScanRequest,
)
from sslyze.mozilla_tls_profile.tls_config_checker import (
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)

# sslyze's own copies of the public trust stores hold a certificate with a serial number
# of 0, which the cryptography package warns about (pyproject.toml turns warnings into errors).
pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")


def mozilla_intermediate_issues(url, ca=None):
    """sslyze's findings for the server at `url` ({} when it complies), `ca` trusted too."""
    address = urlsplit(url)
    extra = {}
    if ca is not None:
        extra["certificate_info"] = CertificateInfoExtraArgument(custom_ca_file=ca)
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(address.hostname, address.port),
        scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
        scan_commands_extra_arguments=ScanCommandsExtraArguments(**extra),
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    (result,) = scanner.get_results()
    try:
        check_server_against_tls_configuration(
            result, MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
        )
    except ServerNotCompliantWithTlsConfiguration as error:
        return error.issues
    return {}


def test_the_tls_port_complies_with_mozillas_intermediate_profile(stack):
    if stack.tls_url is None or stack.ca is None:
        pytest.fail("the stack's TLS port and CA are not known (GATEWAY_TLS_URL, GATEWAY_CA)")
    started = time.monotonic()
    issues = mozilla_intermediate_issues(stack.tls_url, stack.ca)
    print(f"\nsslyze against {stack.tls_url} in {time.monotonic() - started:.1f} s: {issues}")
    # The certificate is checked against the stack's local CA as well as the public stores:
    # with its CA trusted, not even the certificate's trust is left as a finding.
    assert issues == {}


def test_without_its_ca_the_certificates_trust_is_the_only_finding(stack):
    """The check can fail: no public store trusts the local CA, and sslyze says so."""
    issues = mozilla_intermediate_issues(stack.tls_url)
    print(f"\nsslyze, the local CA not trusted: {issues}")
    assert set(issues) == {"certificate_path_validation"}
