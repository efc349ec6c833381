using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Enroll.Shared.Tls;
using MQTTnet;

namespace Enroll.Device.Connection;

/// <summary>
/// Checks the broker's TLS certificate for one connection attempt: its chain against the configured CA (or the system's
/// roots when none is configured) and its name against the host the device dialled. Keeps why it refused, in words.
/// </summary>
internal sealed class ServerCertificateCheck(string host, X509Certificate2Collection? trustedCa)
{
    /// <summary>Why the certificate was refused, or null.</summary>
    public string? Problem { get; private set; }

    public bool Validate(MqttClientCertificateValidationEventArgs args)
    {
        if (args.Certificate is null)
        {
            Problem = "the server sent no certificate";
            return false;
        }

        var certificate = CertificateFiles.AsCertificate2(args.Certificate);
        var problems = new List<string>();
        if (trustedCa is not null)
        {
            var intermediates = args.Chain is null ? null : new X509Certificate2Collection(args.Chain.ChainElements.Select(e => e.Certificate).ToArray());
            if (CertificateFiles.CheckChain(certificate, trustedCa, intermediates, forClientAuthentication: false) is { } chainProblem)
            {
                problems.Add(chainProblem);
            }
        }
        else if ((args.SslPolicyErrors & SslPolicyErrors.RemoteCertificateChainErrors) != 0)
        {
            problems.Add("it is not trusted by this machine's CA certificates (set the CA with --ca / TlsCaFile)");
        }

        if (CertificateFiles.NameProblem(args.SslPolicyErrors, certificate, host) is { } nameProblem)
        {
            problems.Add(nameProblem);
        }

        Problem = problems.Count == 0 ? null : string.Join("; ", problems);
        return Problem is null;
    }
}
