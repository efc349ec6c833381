namespace Enroll.Agent.Tests.Infrastructure;

/// <summary>The repository these tests were built from: its scripts and deploy files are what they test.</summary>
internal static class Repository
{
    private static readonly Lazy<string> RootPath = new(FindRoot);

    public static string Root => RootPath.Value;

    public static string Combine(params string[] parts) => Path.Combine([Root, .. parts]);

    /// <summary>CI runs set CI=true: there a missing tool fails the test instead of skipping it.</summary>
    public static bool IsCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    private static string FindRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        {
            if (File.Exists(Path.Combine(folder.FullName, "Enroll.slnx")))
            {
                return folder.FullName;
            }
        }

        throw new InvalidOperationException($"no Enroll.slnx above {AppContext.BaseDirectory}: run these tests from a build inside the repository");
    }
}
