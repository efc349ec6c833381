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

        if (options.MaxBackoff < options.InitialBackoff)
        {
            failures.Add("MaxBackoff must not be shorter than InitialBackoff.");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
