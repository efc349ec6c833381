namespace Enroll.Server.Registry;

/// <summary>Recent refusals (rate-limited sources, refused tokens and credentials) and the per-minute counts of the fleet overview (issue 15).</summary>
internal interface IRefusalStore;
