using Microsoft.Extensions.Options;

namespace Enroll.Device;

/// <summary>Validates <see cref="EnrollDeviceOptions"/> at start, without reflection.</summary>
[OptionsValidator]
internal sealed partial class EnrollDeviceOptionsValidator : IValidateOptions<EnrollDeviceOptions>;

/// <summary>Checks the rules DataAnnotations cannot express.</summary>
internal sealed class EnrollDeviceOptionsRules : IValidateOptions<EnrollDeviceOptions>
{
    public ValidateOptionsResult Validate(string? name, EnrollDeviceOptions options)
    {
        var failures = new List<string>();
        if (options.Broker is { } broker && broker.Scheme is not ("mqtt" or "mqtts" or "tcp" or "ssl"))
        {
            failures.Add($"Broker must be an mqtt:// or mqtts:// address, not '{broker}'.");
        }

        if ((options.ClientCertificateFile is null) != (options.ClientKeyFile is null))
        {
            failures.Add("ClientCertificateFile and ClientKeyFile go together: set both or neither.");
        }

        var tls = options.Broker?.Scheme is "mqtts" or "ssl";
        if (!tls && (options.TlsCaFile is not null || options.ClientCertificateFile is not null))
        {
            failures.Add("TlsCaFile and ClientCertificateFile need a TLS broker address (mqtts://).");
        }

        foreach (var (file, what) in new[] { (options.TlsCaFile, "TlsCaFile"), (options.ClientCertificateFile, "ClientCertificateFile"), (options.ClientKeyFile, "ClientKeyFile") })
        {
            if (file is not null && !File.Exists(file))
            {
                failures.Add($"{what}: the file {file} does not exist.");
            }
        }

        if (options.MaxBackoff < options.InitialBackoff)
        {
            failures.Add("MaxBackoff must not be shorter than InitialBackoff.");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
