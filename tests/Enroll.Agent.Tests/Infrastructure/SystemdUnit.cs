namespace Enroll.Agent.Tests.Infrastructure;

/// <summary>A systemd unit file read the simple way systemd does: sections, then KEY=VALUE lines (comments skipped).</summary>
internal sealed class SystemdUnit
{
    private readonly Dictionary<string, List<string>> _values = new(StringComparer.Ordinal);

    public SystemdUnit(string text)
    {
        var section = string.Empty;
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line[0] is '#' or ';')
            {
                continue;
            }

            if (line[0] == '[')
            {
                section = line.Trim('[', ']');
                continue;
            }

            var equals = line.IndexOf('=', StringComparison.Ordinal);
            Assert.True(equals > 0, $"not a KEY=VALUE line in [{section}]: {line}");
            var key = $"{section}.{line[..equals]}";
            if (!_values.TryGetValue(key, out var list))
            {
                _values[key] = list = [];
            }

            list.Add(line[(equals + 1)..]);
        }
    }

    /// <summary>The one value of <c>Section.Key</c>; fails when it is absent or given more than once.</summary>
    public string this[string key]
    {
        get
        {
            Assert.True(_values.TryGetValue(key, out var list), $"the unit has no {key}");
            return Assert.Single(list!);
        }
    }
}
