using System.Text;
using System.Text.Json;

namespace Enroll.Reliability.Tests.Harness;

/// <summary>One fault the agent reports, as <c>enroll device status --json</c> shows it (kind in snake_case).</summary>
internal sealed record AgentFault(string Component, string Kind, string Message, int Occurrences)
{
    public override string ToString() => $"{Component}:{Kind}";
}

/// <summary>
/// What the running agent says about its health. The one place the matrix reads it, so the source can move from the state
/// folder's <c>health.json</c> to <c>enroll device status --json</c> (its <c>agent</c> object) in one edit.
/// </summary>
internal static class AgentHealth
{
    /// <summary>The faults the agent of <paramref name="statePath"/> reports now (empty when healthy or never run).</summary>
    public static async Task<IReadOnlyList<AgentFault>> ReadAsync(string statePath)
    {
        var status = await EnrollProcess.RunAsync(["device", "status", "--state", statePath, "--json"]);
        if (TryParseStatus(status.StandardOutput) is { } fromStatus)
        {
            return fromStatus;
        }

        // Until `status --json` shows the agent, read the file it would show.
        return ReadFile(statePath);
    }

    private static List<AgentFault>? TryParseStatus(string json)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            if (!document.RootElement.TryGetProperty("agent", out var agent) || agent.ValueKind != JsonValueKind.Object)
            {
                return null;
            }

            // Waiting for an operator is a state, not a fault, but it is what status must name when a revoked device's
            // re-provisioning needs an approval.
            var faults = Faults(agent);
            if (document.RootElement.TryGetProperty("state", out var state) && state.ValueKind == JsonValueKind.String && state.GetString() == "pending")
            {
                faults.Add(new AgentFault("registration", "pending", "waits for an operator's approval", 1));
            }

            return faults;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The state folder's health.json read directly: cheap enough to poll while a fault lasts.</summary>
    public static List<AgentFault> ReadFile(string statePath)
    {
        var path = Path.Combine(statePath, "health.json");
        for (var attempt = 0; attempt < 5; attempt++)
        {
            try
            {
                if (!File.Exists(path))
                {
                    return [];
                }

                var text = Encoding.UTF8.GetString(File.ReadAllBytes(path)).Trim();
                if (text.Length == 0)
                {
                    return [];
                }

                using var document = JsonDocument.Parse(text);
                return Faults(document.RootElement);
            }
            catch (Exception ex) when (ex is JsonException or IOException)
            {
                // Caught the writer mid-write: read again.
            }
        }

        return [];
    }

    private static List<AgentFault> Faults(JsonElement agent)
    {
        var faults = new List<AgentFault>();
        if (!agent.TryGetProperty("faults", out var list) || list.ValueKind != JsonValueKind.Array)
        {
            return faults;
        }

        foreach (var fault in list.EnumerateArray())
        {
            faults.Add(new AgentFault(
                fault.GetProperty("component").GetString() ?? "?",
                SnakeCase(fault.GetProperty("kind").GetString() ?? "?"),
                fault.TryGetProperty("message", out var m) ? m.GetString() ?? string.Empty : string.Empty,
                fault.TryGetProperty("occurrences", out var o) && o.ValueKind == JsonValueKind.Number ? o.GetInt32() : 1));
        }

        return faults;
    }

    /// <summary><c>MessageRefused</c> and <c>message_refused</c> both become <c>message_refused</c>.</summary>
    public static string SnakeCase(string kind)
    {
        var builder = new StringBuilder();
        for (var i = 0; i < kind.Length; i++)
        {
            if (char.IsUpper(kind[i]) && i > 0 && kind[i - 1] != '_')
            {
                builder.Append('_');
            }

            builder.Append(char.ToLowerInvariant(kind[i]));
        }

        return builder.ToString();
    }
}
