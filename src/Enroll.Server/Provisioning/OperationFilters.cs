using System.Text.Json;
using Enroll.Protocol.Admin;
using Enroll.Server.Registry;
using Microsoft.AspNetCore.Http;

namespace Enroll.Server.Provisioning;

/// <summary>Which operations an <see cref="OperationFilter"/> (bulk decisions, <c>GET /api/provisioning-operations</c>) covers.</summary>
internal static class OperationFilters
{
    /// <summary>The most operations one filtered call looks through for matches (newest first).</summary>
    public const int MaxScanned = 100_000;

    /// <summary>True when <paramref name="operation"/> matches every field <paramref name="filter"/> gives.</summary>
    public static bool Matches(OperationRecord operation, OperationFilter filter)
    {
        if (filter.OrgId is { } org && operation.OrgId != org)
        {
            return false;
        }

        if (filter.ProvisioningTokenId is { } token && operation.ProvisioningTokenId != token)
        {
            return false;
        }

        if (filter.Metadata is not { Count: > 0 } wanted)
        {
            return true;
        }

        if (operation.MetadataJson is null)
        {
            return false;
        }

        var metadata = JsonSerializer.Deserialize(operation.MetadataJson, RegistryJsonContext.Default.DictionaryStringJsonElement);
        return metadata is not null && wanted.All(w => metadata.TryGetValue(w.Key, out var value) && Text(value) == w.Value);
    }

    /// <summary>The filter for <c>GET /api/provisioning-operations?org=&amp;token=&amp;meta.KEY=VALUE</c>.</summary>
    public static OperationFilter FromQuery(IQueryCollection query)
    {
        Dictionary<string, string>? metadata = null;
        foreach (var (key, value) in query)
        {
            if (key.StartsWith("meta.", StringComparison.Ordinal) && key.Length > 5)
            {
                (metadata ??= new(StringComparer.Ordinal))[key[5..]] = value.ToString();
            }
        }

        return new OperationFilter { OrgId = query["org"].FirstOrDefault(), ProvisioningTokenId = query["token"].FirstOrDefault(), Metadata = metadata };
    }

    private static string Text(JsonElement value) => value.ValueKind == JsonValueKind.String ? value.GetString()! : value.GetRawText();
}
