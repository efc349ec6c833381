using System.Security.Cryptography.X509Certificates;
using Enroll.Shared.Files;
using Enroll.Shared.Tls;

namespace Enroll.Server;

/// <summary>The server's TLS material, loaded and checked once at start: its certificate and the CAs of client certificates.</summary>
internal sealed class ServerTls
{
    private ServerTls(X509Certificate2? certificate, X509Certificate2Collection? chain, X509Certificate2Collection? clientCa)
    {
        Certificate = certificate;
        Chain = chain;
        ClientCa = clientCa;
        CertificateContext = certificate is null ? null : System.Net.Security.SslStreamCertificateContext.Create(certificate, chain, offline: true);
    }

    public X509Certificate2? Certificate { get; }

    /// <summary>The intermediate certificates after the server's own in the certificate file, sent along in handshakes.</summary>
    public X509Certificate2Collection? Chain { get; }

    /// <summary>The certificate with its chain, for TLS handshakes.</summary>
    public System.Net.Security.SslStreamCertificateContext? CertificateContext { get; }

    public X509Certificate2Collection? ClientCa { get; }

    /// <summary>Loads what <paramref name="options"/> name; a setting that cannot work is an error naming the flag.</summary>
    public static ServerTls Load(EnrollServerOptions options)
    {
        if ((options.TlsCertificateFile is null) != (options.TlsKeyFile is null))
        {
            throw new ArgumentException("--tls-cert and --tls-key go together: give both or neither");
        }

        if (options.TlsCertificateFile is null)
        {
            if (options.NoPlaintext)
            {
                throw new ArgumentException("--no-plaintext needs --tls-cert and --tls-key: without them the server would not listen at all");
            }

            if (options.ClientCaFile is not null)
            {
                throw new ArgumentException("--client-ca needs --tls-cert and --tls-key: client certificates are only presented over TLS");
            }

            return new ServerTls(null, null, null);
        }

        if (options.ExternalBroker is not null && options.ClientCaFile is not null)
        {
            throw new ArgumentException("--client-ca works with the embedded broker only; an external broker checks client certificates itself");
        }

        if (OwnerOnlyFiles.Supported && File.Exists(options.TlsKeyFile) && OwnerOnlyFiles.IsAccessibleByOthers(options.TlsKeyFile))
        {
            throw new InvalidOperationException($"the TLS private key {options.TlsKeyFile} can be read by other users; make it owner-only (chmod 600)");
        }

        var certificate = CertificateFiles.LoadWithKey(options.TlsCertificateFile, options.TlsKeyFile!);
        var chain = CertificateFiles.LoadBundle(options.TlsCertificateFile);
        chain.RemoveAt(0);
        var clientCa = options.ClientCaFile is null ? null : CertificateFiles.LoadBundle(options.ClientCaFile);
        return new ServerTls(certificate, chain, clientCa);
    }
}
