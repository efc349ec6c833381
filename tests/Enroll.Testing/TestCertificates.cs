using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Enroll.Testing;

/// <summary>A certificate written as PEM files: the certificate and its owner-only private key.</summary>
public sealed record PemFiles(string CertificatePath, string KeyPath);

/// <summary>
/// A private certificate authority for TLS tests: it issues server certificates (for 127.0.0.1 and localhost unless told
/// otherwise) and client certificates, all written as PEM files into a folder the caller owns.
/// </summary>
public sealed class TestCertificates : IDisposable
{
    private readonly string _folder;
    private readonly X509Certificate2 _ca;
    private int _issued;

    public TestCertificates(string folder, string name = "Enroll Test CA")
    {
        _folder = folder;
        Directory.CreateDirectory(folder);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        _ca = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(1));
        CaPath = Path.Combine(folder, $"{Sanitize(name)}.ca.pem");
        File.WriteAllText(CaPath, _ca.ExportCertificatePem());
    }

    /// <summary>The CA certificate, as PEM.</summary>
    public string CaPath { get; }

    /// <summary>A server certificate for <paramref name="dnsNames"/> (default localhost) and <paramref name="addresses"/> (default 127.0.0.1).</summary>
    public PemFiles IssueServer(string[]? dnsNames = null, IPAddress[]? addresses = null, DateTimeOffset? notAfter = null)
    {
        var names = new SubjectAlternativeNameBuilder();
        foreach (var dns in dnsNames ?? ["localhost"])
        {
            names.AddDnsName(dns);
        }

        foreach (var address in addresses ?? [IPAddress.Loopback])
        {
            names.AddIpAddress(address);
        }

        return Issue($"CN={(dnsNames ?? ["localhost"]).FirstOrDefault() ?? "server"}", names.Build(), "1.3.6.1.5.5.7.3.1", notAfter);
    }

    /// <summary>A client certificate whose common name is <paramref name="clientId"/> (and organisation <paramref name="org"/>).</summary>
    public PemFiles IssueClient(string clientId, string? org = null) =>
        Issue(org is null ? $"CN={clientId}" : $"CN={clientId}, O={org}", null, "1.3.6.1.5.5.7.3.2", null);

    public void Dispose() => _ca.Dispose();

    private PemFiles Issue(string subject, X509Extension? alternativeNames, string usage, DateTimeOffset? notAfter)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyAgreement, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(usage)], false));
        if (alternativeNames is not null)
        {
            request.CertificateExtensions.Add(alternativeNames);
        }

        var serial = BitConverter.GetBytes(Interlocked.Increment(ref _issued) + (DateTime.UtcNow.Ticks & 0x7FFFFFFF));
        var expires = notAfter ?? DateTimeOffset.UtcNow.AddDays(30);
        using var certificate = request.Create(_ca, DateTimeOffset.UtcNow.AddDays(-1), expires < _ca.NotAfter ? expires : _ca.NotAfter.AddMinutes(-1), serial);
        var stem = Path.Combine(_folder, $"{Sanitize(subject)}-{_issued}");
        var files = new PemFiles(stem + ".pem", stem + ".key");
        File.WriteAllText(files.CertificatePath, certificate.ExportCertificatePem());
        File.WriteAllText(files.KeyPath, key.ExportPkcs8PrivateKeyPem());
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(files.KeyPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
        return files;
    }

    private static string Sanitize(string name) => string.Concat(name.Select(c => char.IsLetterOrDigit(c) ? c : '-'));
}
