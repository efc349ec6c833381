using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench/Enroll.Benchmarks -- --filter '*'          (everything)
// dotnet run -c Release --project bench/Enroll.Benchmarks -- --filter '*Token*'    (one group)
BenchmarkSwitcher.FromAssembly(typeof(Enroll.Benchmarks.RequestDecodeBenchmarks).Assembly).Run(args);
