using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Enroll.Shared.Tls;

/// <summary>
/// PEM certificate files as Enroll reads them (a certificate with its key, or a bundle of CA certificates) and the
/// chain check both ends of a TLS connection run against a configured CA instead of the system's roots.
/// </summary>
internal static class CertificateFiles
{
    /// <summary>Loads a PEM certificate (chain) and its PEM private key; errors name the file and what is wrong.</summary>
    public static X509Certificate2 LoadWithKey(string certificatePath, string keyPath)
    {
        RequireFile(certificatePath, "certificate");
        RequireFile(keyPath, "private key");
        try
        {
            var certificate = X509Certificate2.CreateFromPemFile(certificatePath, keyPath);
            if (!certificate.HasPrivateKey)
            {
                throw new InvalidOperationException($"{keyPath} does not hold the private key of {certificatePath}");
            }

            return certificate;
        }
        catch (CryptographicException ex)
        {
            throw new InvalidOperationException($"cannot load the certificate {certificatePath} with the key {keyPath}: {ex.Message}", ex);
        }
        catch (ArgumentException ex)
        {
            throw new InvalidOperationException($"cannot load the certificate {certificatePath} with the key {keyPath}: {ex.Message}", ex);
        }
    }

    /// <summary>Loads every certificate of a PEM bundle (one or more CA certificates).</summary>
    public static X509Certificate2Collection LoadBundle(string path)
    {
        RequireFile(path, "CA certificate");
        var bundle = new X509Certificate2Collection();
        try
        {
            bundle.ImportFromPemFile(path);
        }
        catch (CryptographicException ex)
        {
            throw new InvalidOperationException($"cannot read the CA certificates in {path}: {ex.Message}", ex);
        }

        if (bundle.Count == 0)
        {
            throw new InvalidOperationException($"{path} holds no PEM certificate");
        }

        return bundle;
    }

    /// <summary>
    /// Checks that <paramref name="certificate"/> chains to one of <paramref name="roots"/> (and only those: the system
    /// store is not consulted) and is valid now. Returns null when it does, else why not, in words.
    /// </summary>
    public static string? CheckChain(X509Certificate2 certificate, X509Certificate2Collection roots, X509Certificate2Collection? intermediates, bool forClientAuthentication)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(roots);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.ApplicationPolicy.Add(new Oid(forClientAuthentication ? "1.3.6.1.5.5.7.3.2" : "1.3.6.1.5.5.7.3.1"));
        if (intermediates is not null)
        {
            chain.ChainPolicy.ExtraStore.AddRange(intermediates);
        }

        if (chain.Build(certificate))
        {
            return null;
        }

        var problems = chain.ChainStatus
            .Where(s => s.Status != X509ChainStatusFlags.NoError)
            .Select(s => s.Status switch
            {
                X509ChainStatusFlags.UntrustedRoot or X509ChainStatusFlags.PartialChain => "it is not signed by the configured CA",
                X509ChainStatusFlags.NotTimeValid => "it has expired or is not valid yet",
                X509ChainStatusFlags.NotValidForUsage => forClientAuthentication ? "it is not valid for client authentication" : "it is not valid for server authentication",
                _ => s.StatusInformation.Trim(),
            })
            .Distinct()
            .ToList();
        return problems.Count == 0 ? "its chain could not be built" : string.Join("; ", problems);
    }

    /// <summary>The certificate as <see cref="X509Certificate2"/>, whatever type the TLS stack handed over.</summary>
    public static X509Certificate2 AsCertificate2(X509Certificate certificate) =>
        certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.Export(X509ContentType.Cert));

    /// <summary>Describes a server certificate's name problems from the TLS policy errors, or null.</summary>
    public static string? NameProblem(SslPolicyErrors errors, X509Certificate2 certificate, string host) =>
        (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0
            ? $"it is for '{certificate.GetNameInfo(X509NameType.DnsName, false)}', not '{host}'"
            : null;

    private static void RequireFile(string path, string what)
    {
        if (!File.Exists(path))
        {
            throw new InvalidOperationException($"the {what} file {path} does not exist");
        }
    }
}
